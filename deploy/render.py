#!/usr/bin/env python3
"""Renders the ferrolb Helm chart without Helm, and keeps the files generated from it in step.

One source of truth: the chart (deploy/helm/ferrolb) and the CRDs crdgen writes (deploy/crds).
This script generates, deterministically:

  deploy/helm/ferrolb/crds/*.yaml    byte copies of deploy/crds/*.yaml (Helm installs crds/ first)
  deploy/manifests/ferrolb.yaml      the chart rendered with deploy/manifests/values.yaml, CRDs
                                     included: the plain, kubectl-applyable install
  deploy/examples/values/*.yaml      Helm values files made from the ready-to-apply configs in
                                     deploy/examples/*.yaml (their ferrolb.io objects and Secrets)

Usage:
  python3 deploy/render.py             regenerate all of the above
  python3 deploy/render.py --check     exit 1, listing the stale files, if any is out of date
  python3 deploy/render.py template [-f VALUES]...   print the chart rendered (like `helm template`;
                                                    a generated membership key is random)
  python3 deploy/render.py merge-values [--json] [-f VALUES]...  print the chart's values with overlays
  python3 deploy/render.py compare-helm HELM_OUTPUT [-f VALUES]...  compare the chart rendered here
      with Helm's own rendering of it (deploy/helm_render.py): same objects, in the same order

Helm is not needed and not used here: no Helm template renderer is available on these machines
(helm-sdkpy offers Lint and Install only). So this file implements the part of Go's text/template
and of Helm's/sprig's functions that the chart uses, with Go's semantics (whitespace trimming,
truthiness, short-circuit and/or, `include`, `toYaml` with sorted keys and no trailing newline,
`nindent`, ...). Anything else is an error naming the construct, never a silent difference:
keep the chart inside this subset or extend it here. Functions that need a cluster or randomness
(lookup, randAlphaNum, b64enc) are refused when generating files (the plain manifest's values
turn off the one template that uses them, the membership Secret); `template` evaluates them as
`helm template` does (lookup finds nothing, the key is random). `deploy/lint.sh` checks the same chart with
Helm's own library, so a template that Helm rejects cannot pass CI either.

Needs Python 3 and PyYAML (Debian: python3-yaml).
"""

import argparse
import base64
import json
import os
import re
import secrets
import string
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "deploy", "helm", "ferrolb")
CRD_SOURCE = os.path.join(ROOT, "deploy", "crds")
CHART_CRDS = os.path.join(CHART, "crds")
MANIFEST = os.path.join(ROOT, "deploy", "manifests", "ferrolb.yaml")
MANIFEST_VALUES = os.path.join(ROOT, "deploy", "manifests", "values.yaml")
EXAMPLES = os.path.join(ROOT, "deploy", "examples")
EXAMPLE_VALUES = os.path.join(EXAMPLES, "values")

RELEASE_NAME = "ferrolb"
RELEASE_NAMESPACE = "ferrolb-system"

# Chart values each example's Helm values file sets besides its config objects.
EXAMPLE_SETTINGS = {
    "l2-only.yaml": {"speaker": {"l2": {"enabled": True}, "bgp": {"enabled": False}}},
    "bgp-only.yaml": {"speaker": {"l2": {"enabled": False}, "bgp": {"enabled": True}}},
    "dual-stack.yaml": {},
    "shared-ip.yaml": {},
    "per-namespace-pools.yaml": {},
}

# Helm's install order (pkg/releaseutil/kind_sorter.go); other kinds go last, sorted by kind name.
INSTALL_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
    "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
    "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
    "IngressClass", "Ingress", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]


class RenderError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Parsing: text/template actions, with {{- and -}} trimming.

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


class Node:
    pass


class Text(Node):
    def __init__(self, text):
        self.text = text


class Action(Node):
    def __init__(self, pipe, where):
        self.pipe, self.where = pipe, where


class If(Node):
    def __init__(self, where):
        self.branches = []  # [(pipe, body)]
        self.otherwise = None
        self.where = where


class With(If):
    pass


class Range(Node):
    def __init__(self, decl, pipe, where):
        self.decl, self.pipe, self.where = decl, pipe, where
        self.body, self.otherwise = [], None


def lex(src, name):
    """Yields ("text", str) and ("action", str, where) with Go's trimming applied."""
    out = []
    pos = 0
    trim_next = False
    for m in ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        out.append(("text", text))
        line = src.count("\n", 0, m.start()) + 1
        out.append(("action", m.group(2).strip(), f"{name}:{line}"))
        trim_next = bool(m.group(3))
        pos = m.end()
    text = src[pos:]
    if trim_next:
        text = text.lstrip(" \t\r\n")
    out.append(("text", text))
    return out


TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<decl>:=)
    | (?P<assign>=)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|(),])
    )""",
    re.X,
)


def tokenize(s, where):
    toks, pos = [], 0
    s = s.rstrip()
    while pos < len(s):
        m = TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise RenderError(f"{where}: cannot parse {s[pos:]!r}")
        kind = m.lastgroup
        toks.append((kind, m.group(kind)))
        pos = m.end()
    return toks


def parse_pipeline(toks, where):
    """Returns ("pipe", decl_vars, is_decl, commands); a command is a list of operands."""
    decl, is_decl = [], None
    # "$a := ...", "$a, $b := ...", "$a = ..."
    for i, (k, v) in enumerate(toks):
        if k in ("decl", "assign"):
            decl = [t[1] for t in toks[:i] if t[0] == "var"]
            is_decl = k == "decl"
            toks = toks[i + 1:]
            break
    cmds, pos = [], 0

    def operand(pos):
        k, v = toks[pos]
        if k == "punct" and v == "(":
            inner, pos = commands_until(pos + 1, ")")
            return ("pipe", [], None, inner), pos + 1
        if k == "str":
            return ("lit", json.loads(v)), pos + 1
        if k == "raw":
            return ("lit", v[1:-1]), pos + 1
        if k == "num":
            return ("lit", float(v) if "." in v else int(v)), pos + 1
        if k == "ident":
            if v in ("true", "false"):
                return ("lit", v == "true"), pos + 1
            if v == "nil":
                return ("lit", None), pos + 1
            return ("func", v), pos + 1
        if k == "var":
            parts = v.split(".")
            return ("var", parts[0], parts[1:]), pos + 1
        if k == "field":
            return ("field", [p for p in v.split(".") if p]), pos + 1
        raise RenderError(f"{where}: unexpected {v!r}")

    def commands_until(pos, close):
        cmds, cmd = [], []
        while True:
            if pos >= len(toks):
                if close:
                    raise RenderError(f"{where}: missing {close!r}")
                break
            k, v = toks[pos]
            if k == "punct" and v == close:
                break
            if k == "punct" and v == "|":
                cmds.append(cmd)
                cmd, pos = [], pos + 1
                continue
            op, pos = operand(pos)
            cmd.append(op)
        cmds.append(cmd)
        if any(not c for c in cmds):
            raise RenderError(f"{where}: empty command in pipeline")
        return cmds, pos

    cmds, pos = commands_until(0, None)
    return ("pipe", decl, is_decl, cmds)


def parse(src, name, defines):
    """Parses a template file into a node list; {{ define }} blocks go into `defines`."""
    items = lex(src, name)
    pos = 0

    def block(stop):
        nonlocal pos
        nodes = []
        while pos < len(items):
            item = items[pos]
            pos += 1
            if item[0] == "text":
                if item[1]:
                    nodes.append(Text(item[1]))
                continue
            body, where = item[1], item[2]
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise RenderError(f"{where}: unterminated comment")
                continue
            word = body.split(None, 1)[0] if body else ""
            rest = body[len(word):].strip()
            if word in ("end", "else"):
                if word not in stop:
                    raise RenderError(f"{where}: unexpected {{{{ {word} }}}}")
                return nodes, word, rest, where
            if word in ("if", "with"):
                node = If(where) if word == "if" else With(where)
                cond = parse_pipeline(tokenize(rest, where), where)
                while True:
                    body_nodes, ended, tail, w2 = block(("end", "else"))
                    node.branches.append((cond, body_nodes))
                    if ended == "end":
                        break
                    if tail.startswith("if ") and word == "if":
                        cond = parse_pipeline(tokenize(tail[3:], w2), w2)
                        continue
                    if tail:
                        raise RenderError(f"{w2}: unsupported else form {tail!r}")
                    node.otherwise, ended, _, _ = block(("end",))
                    break
                nodes.append(node)
            elif word == "range":
                pipe = parse_pipeline(tokenize(rest, where), where)
                node = Range(pipe[1], pipe, where)
                node.body, ended, _, _ = block(("end", "else"))
                if ended == "else":
                    node.otherwise, _, _, _ = block(("end",))
                nodes.append(node)
            elif word == "define":
                m = re.fullmatch(r'"([^"]+)"', rest)
                if not m:
                    raise RenderError(f"{where}: bad define {rest!r}")
                body_nodes, _, _, _ = block(("end",))
                defines[m.group(1)] = body_nodes
            elif word in ("template", "block", "break", "continue"):
                raise RenderError(f"{where}: {{{{ {word} }}}} is not supported by render.py")
            else:
                nodes.append(Action(parse_pipeline(tokenize(body, where), where), where))
        if stop:
            raise RenderError(f"{name}: missing {{{{ end }}}}")
        return nodes, None, "", name

    nodes, _, _, _ = block(())
    return nodes


# ---------------------------------------------------------------------------------------------
# Evaluation.

def truthy(v):
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return True


def to_text(v, where):
    """Go's fmt.Print of a value, for the types the chart prints."""
    if v is None:
        return ""  # Helm replaces "<no value>" with ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if abs(v) >= 1_000_000:
            # Helm's values are float64: Go would print 1e+06 here.
            raise RenderError(f"{where}: printing the number {v} (Helm would print it as a float)")
        return str(v)
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1_000_000:
            return str(int(v))
        return repr(v)
    if isinstance(v, str):
        return v
    raise RenderError(f"{where}: printing a {type(v).__name__} (use toYaml)")


def to_yaml(v):
    if v is None:
        return "null"
    text = yaml.safe_dump(v, default_flow_style=False, sort_keys=True, allow_unicode=True,
                          width=float("inf"))
    if text.endswith("\n...\n"):
        text = text[: -len("...\n")]
    return text.rstrip("\n") if text != "\n" else ""


def indent(n, s):
    pad = " " * n
    return pad + s.replace("\n", "\n" + pad)


def go_quote(s):
    return json.dumps(s, ensure_ascii=False)


def printf(fmt, *args):
    args = list(args)

    def sub(m):
        verb = m.group(0)
        if verb == "%%":
            return "%"
        if not args:
            raise RenderError(f"printf: missing argument for {verb}")
        a = args.pop(0)
        if verb in ("%s", "%v", "%d"):
            return to_text(a, "printf")
        if verb == "%q":
            return go_quote(to_text(a, "printf"))
        raise RenderError(f"printf: verb {verb} not supported")

    return re.sub(r"%[%svdq]|%.", sub, fmt)


def to_int(v):
    if v is None:
        return 0
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str):
        try:
            return int(float(v))
        except ValueError:
            return 0
    raise RenderError(f"int of a {type(v).__name__}")


def dig(*args):
    *keys, default, d = args
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def rand_alnum(n):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def refused(name):
    def f(*_):
        raise RenderError(
            f"{name} needs Helm (a cluster or randomness); render.py cannot evaluate it: "
            "turn the template off in these values"
        )
    return f


class Renderer:
    """`offline`: evaluate lookup (an empty result, as `helm template` has no cluster) and the
    random functions, for `render.py template`. The generated files are rendered without it, so
    they stay deterministic and hold no secret."""

    def __init__(self, defines, root, offline=False, cluster=None):
        self.defines = defines
        self.root = root
        self.funcs = {
            "include": self.include,
            "toYaml": to_yaml,
            "nindent": lambda n, s: "\n" + indent(n, s),
            "indent": indent,
            "quote": lambda *a: " ".join(go_quote(to_text(x, "quote")) for x in a if x is not None),
            "default": lambda d, *v: v[0] if v and truthy(v[0]) else d,
            "printf": printf,
            "contains": lambda sub, s: sub in s,
            "trunc": lambda n, s: s[:n] if n >= 0 else s[n:],
            "trimSuffix": lambda suf, s: s[: -len(suf)] if suf and s.endswith(suf) else s,
            "int": to_int,
            "eq": lambda a, *b: any(a == x for x in b),
            "ne": lambda a, b: a != b,
            "lt": lambda a, b: a < b,
            "gt": lambda a, b: a > b,
            "not": lambda a: not truthy(a),
            "index": self.index,
            "list": lambda *a: list(a),
            "dict": lambda *a: {a[i]: a[i + 1] for i in range(0, len(a), 2)},
            "omit": lambda d, *keys: {k: v for k, v in d.items() if k not in keys},
            "dig": dig,
            "fail": self.fail,
            "lookup": refused("lookup"),
            "randAlphaNum": refused("randAlphaNum"),
            "b64enc": refused("b64enc"),
        }
        if offline:
            # cluster: objects `lookup` finds, keyed "apiVersion/kind/namespace/name" (--lookup).
            self.funcs["lookup"] = lambda api, kind, ns, name: (cluster or {}).get(
                f"{api}/{kind}/{ns}/{name}", {})
            self.funcs["randAlphaNum"] = lambda n: rand_alnum(to_int(n))
            self.funcs["b64enc"] = lambda s: base64.b64encode(to_text(s, "b64enc").encode()).decode()

    @staticmethod
    def fail(msg):
        raise RenderError(f"fail: {msg}")

    @staticmethod
    def index(coll, *keys):
        for k in keys:
            if coll is None:
                raise RenderError("index of nil")
            try:
                coll = coll[k]
            except (KeyError, IndexError, TypeError):
                if isinstance(coll, dict):
                    coll = None
                else:
                    raise RenderError(f"index {k!r} out of range")
        return coll

    def include(self, name, data):
        if name not in self.defines:
            raise RenderError(f'include: no template "{name}"')
        return self.run(self.defines[name], data, {"$": data})

    # Values: field chains on dicts (missing keys give nil, like Helm's missingkey=zero).
    @staticmethod
    def walk(v, fields, where):
        for f in fields:
            if isinstance(v, dict):
                v = v.get(f)
            elif v is None:
                raise RenderError(f"{where}: nil pointer evaluating .{f}")
            else:
                raise RenderError(f"{where}: can't evaluate field {f} in {type(v).__name__}")
        return v

    def operand(self, op, dot, scope, where, final=None):
        kind = op[0]
        if kind == "lit":
            return op[1]
        if kind == "field":
            return self.walk(dot, op[1], where)
        if kind == "var":
            if op[1] not in scope:
                raise RenderError(f"{where}: undefined variable {op[1]}")
            return self.walk(scope[op[1]], op[2], where)
        if kind == "pipe":
            return self.pipeline(op, dot, scope, where)
        if kind == "func":
            raise RenderError(f"{where}: function {op[1]} used as a value")
        raise AssertionError(op)

    def command(self, cmd, dot, scope, where, piped):
        head = cmd[0]
        if head[0] != "func":
            if len(cmd) > 1 or piped is not None:
                raise RenderError(f"{where}: cannot call a non-function")
            return self.operand(head, dot, scope, where)
        name = head[1]
        args = cmd[1:]
        if name in ("and", "or"):  # short-circuit, returning the deciding operand
            values = [lambda a=a: self.operand(a, dot, scope, where) for a in args]
            if piped is not None:
                values.append(lambda: piped[0])
            last = None
            for get in values:
                last = get()
                if (name == "and") != truthy(last):
                    return last
            return last
        if name not in self.funcs:
            raise RenderError(f"{where}: function {name!r} is not supported by render.py")
        vals = [self.operand(a, dot, scope, where) for a in args]
        if piped is not None:
            vals.append(piped[0])
        try:
            return self.funcs[name](*vals)
        except RenderError as e:
            raise RenderError(f"{where}: {e}") from None
        except TypeError as e:
            raise RenderError(f"{where}: {name}: {e}") from None

    def pipeline(self, pipe, dot, scope, where):
        _, _, _, cmds = pipe
        piped = None
        for cmd in cmds:
            piped = (self.command(cmd, dot, scope, where, piped),)
        return piped[0]

    def run(self, nodes, dot, scope):
        out = []
        scope = dict(scope)
        for n in nodes:
            if isinstance(n, Text):
                out.append(n.text)
            elif isinstance(n, Action):
                _, decl, is_decl, _ = n.pipe
                v = self.pipeline(n.pipe, dot, scope, n.where)
                if decl:
                    if not is_decl and decl[0] not in scope:
                        raise RenderError(f"{n.where}: assignment to undeclared {decl[0]}")
                    scope[decl[0]] = v
                else:
                    out.append(to_text(v, n.where))
            elif isinstance(n, If):
                for cond, body in n.branches:
                    v = self.pipeline(cond, dot, scope, n.where)
                    if truthy(v):
                        out.append(self.run(body, v if isinstance(n, With) else dot, scope))
                        break
                else:
                    if n.otherwise is not None:
                        out.append(self.run(n.otherwise, dot, scope))
            elif isinstance(n, Range):
                v = self.pipeline(n.pipe, dot, scope, n.where)
                if isinstance(v, dict):
                    pairs = [(k, v[k]) for k in sorted(v)]
                elif isinstance(v, list):
                    pairs = list(enumerate(v))
                elif v is None:
                    pairs = []
                else:
                    raise RenderError(f"{n.where}: range over {type(v).__name__}")
                if not pairs and n.otherwise is not None:
                    out.append(self.run(n.otherwise, dot, scope))
                for k, item in pairs:
                    inner = dict(scope)
                    if len(n.decl) == 1:
                        inner[n.decl[0]] = item
                    elif len(n.decl) == 2:
                        inner[n.decl[0]], inner[n.decl[1]] = k, item
                    out.append(self.run(n.body, item, inner))
            else:
                raise AssertionError(n)
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# The chart.

def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def merge_values(base, overlay):
    """Helm's coalescing of user values over chart defaults: maps merge, null deletes a key."""
    out = dict(base)
    for k, v in overlay.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_values(out[k], v)
        else:
            out[k] = v
    return out


def chart_values(value_files):
    values = load_yaml(os.path.join(CHART, "values.yaml"))
    for f in value_files:
        values = merge_values(values, load_yaml(f))
    return values


def split_documents(text):
    """Helm's SplitManifests: documents separated by lines of ---, empty ones dropped."""
    docs = re.split(r"(?:^|\n)---[ \t]*(?=\n|$)", text)
    return [d.strip("\n") for d in docs if d.strip()]


def render_chart(value_files, offline=False, cluster=None):
    """Renders templates/ like `helm template`: a list of (source, kind, name, text)."""
    chart_meta = load_yaml(os.path.join(CHART, "Chart.yaml"))
    values = chart_values(value_files)
    root = {
        "Values": values,
        "Release": {
            "Name": RELEASE_NAME,
            "Namespace": RELEASE_NAMESPACE,
            # Marks the plain manifest's objects as applied with kubectl, not owned by Helm.
            "Service": "kubectl",
            "IsInstall": True,
            "IsUpgrade": False,
            "Revision": 1,
        },
        "Chart": {
            "Name": chart_meta["name"],
            "Version": chart_meta["version"],
            "AppVersion": chart_meta.get("appVersion", ""),
        },
    }
    tdir = os.path.join(CHART, "templates")
    names = sorted(n for n in os.listdir(tdir) if n.endswith((".yaml", ".yml", ".tpl")))
    defines, parsed = {}, {}
    for n in names:
        with open(os.path.join(tdir, n), encoding="utf-8") as f:
            parsed[n] = parse(f.read(), f"templates/{n}", defines)
    r = Renderer(defines, root, offline, cluster)
    docs = []
    for n in names:
        if n.startswith("_") or n.endswith(".tpl"):
            continue
        text = r.run(parsed[n], root, {"$": root})
        for d in split_documents(text):
            try:
                meta = yaml.safe_load(d)
            except yaml.YAMLError as e:
                raise RenderError(f"templates/{n} renders invalid YAML: {e}\n{d}") from None
            if meta is None:
                continue
            if not isinstance(meta, dict) or "kind" not in meta:
                raise RenderError(f"templates/{n}: a document without kind:\n{d}")
            docs.append((f"{chart_meta['name']}/templates/{n}", meta["kind"],
                         meta.get("metadata", {}).get("name", ""), d))
    return docs


def crd_documents():
    docs = []
    for n in sorted(os.listdir(CHART_CRDS)):
        if n.endswith(".yaml"):
            with open(os.path.join(CHART_CRDS, n), encoding="utf-8") as f:
                text = f.read()
            for d in split_documents(text):
                meta = yaml.safe_load(d)
                docs.append((f"ferrolb/crds/{n}", meta["kind"], meta["metadata"]["name"], d))
    return docs


def install_order(docs):
    def key(item):
        i, (_, kind, _, _) = item
        if kind in INSTALL_ORDER:
            return (INSTALL_ORDER.index(kind), "", i)
        return (len(INSTALL_ORDER), kind, i)  # other kinds after, by kind name (as Helm does)

    return [d for _, d in sorted(enumerate(docs), key=key)]


def manifest_text():
    docs = install_order(crd_documents() + render_chart([MANIFEST_VALUES]))
    head = (
        "# Generated by `python3 deploy/render.py` from deploy/helm/ferrolb (values:\n"
        "# deploy/manifests/values.yaml) and deploy/crds. Do not edit.\n"
        "# Install: kubectl apply --server-side -f deploy/manifests/ferrolb.yaml (see deploy/README.md).\n"
    )
    body = "".join(f"---\n# Source: {src}\n{text}\n" for src, _, _, text in docs)
    return head + body


def example_values(name):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    objects = []
    for d in docs:
        if d.get("apiVersion") == "ferrolb.io/v1beta1" or (
            d.get("apiVersion") == "v1" and d.get("kind") == "Secret"
        ):
            obj = dict(d)
            meta = dict(obj.get("metadata", {}))
            meta.pop("namespace", None)  # the chart puts them in the release namespace
            obj["metadata"] = meta
            objects.append(obj)
    values = merge_values(EXAMPLE_SETTINGS[name], {"config": {"create": True, "objects": objects}})
    head = (
        f"# Generated by `python3 deploy/render.py` from deploy/examples/{name}. Do not edit.\n"
        f"# Helm values: helm install ferrolb deploy/helm/ferrolb -n ferrolb-system -f THIS_FILE\n"
    )
    return head + yaml.safe_dump(values, default_flow_style=False, sort_keys=False,
                                 allow_unicode=True, width=float("inf"))


def normalized(text):
    """The objects of a rendering, with what legitimately differs between two renderings made
    out: the managed-by label (Helm: "Helm", here: "kubectl") and generated keys (random)."""
    out = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue

        def walk(v, key=None):
            if isinstance(v, dict):
                if key == "labels":
                    v = {k: x for k, x in v.items() if k != "app.kubernetes.io/managed-by"}
                return {k: walk(x, k) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        doc = walk(doc)
        if doc.get("kind") == "Secret" and "secretkey" in (doc.get("data") or {}):
            key = base64.b64decode(doc["data"]["secretkey"]).decode()
            ok = len(key) == 64 and key.isalnum()
            doc["data"]["secretkey"] = "<64 random characters>" if ok else f"<bad key {key!r}>"
        out.append(doc)
    return out


def compare_renderings(ours, theirs):
    a, b = normalized(ours), normalized(theirs)
    ident = lambda d: f"{d.get('kind')} {d.get('metadata', {}).get('name')}"  # noqa: E731
    problems = []
    if [ident(d) for d in a] != [ident(d) for d in b]:
        problems.append("different objects or order:\n  render.py: %s\n  Helm:      %s"
                        % ([ident(d) for d in a], [ident(d) for d in b]))
    for x, y in zip(a, b):
        if x != y:
            problems.append(f"{ident(x)} differs:\n--- render.py\n{to_yaml(x)}\n--- Helm\n{to_yaml(y)}")
    return problems


def generated_files():
    """Every generated path with its expected content (bytes)."""
    files = {}
    for n in sorted(os.listdir(CRD_SOURCE)):
        if n.endswith(".yaml"):
            with open(os.path.join(CRD_SOURCE, n), "rb") as f:
                files[os.path.join(CHART_CRDS, n)] = f.read()
    files[MANIFEST] = None  # rendered after the CRDs are in place (it reads the chart's crds/)
    for n in sorted(EXAMPLE_SETTINGS):
        files[os.path.join(EXAMPLE_VALUES, n)] = example_values(n).encode()
    return files


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    p.add_argument("command", nargs="?", default="generate",
                   choices=["generate", "template", "merge-values", "compare-helm"])
    p.add_argument("helm_output", nargs="?", help="compare-helm: Helm's rendering (YAML)")
    p.add_argument("--json", action="store_true", help="merge-values: print JSON")
    p.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    p.add_argument("--lookup", help="template: JSON file of objects `lookup` finds, keyed "
                   '"apiVersion/kind/namespace/name" (to show what an upgrade renders)')
    a = p.parse_args()
    try:
        if a.command == "template":
            cluster = None
            if a.lookup:
                with open(a.lookup, encoding="utf-8") as f:
                    cluster = json.load(f)
            docs = render_chart(a.values, offline=True, cluster=cluster)
            sys.stdout.write("".join(f"---\n# Source: {s}\n{t}\n" for s, _, _, t in install_order(docs)))
            return 0
        if a.command == "compare-helm":
            with open(a.helm_output, encoding="utf-8") as f:
                theirs = f.read()
            ours = "".join(f"---\n{t}\n" for _, _, _, t in install_order(render_chart(a.values, offline=True)))
            problems = compare_renderings(ours, theirs)
            for p_ in problems:
                print(p_, file=sys.stderr)
            return 1 if problems else 0
        if a.command == "merge-values" and a.json:
            json.dump(chart_values(a.values), sys.stdout, sort_keys=True)
            return 0
        if a.command == "merge-values":
            sys.stdout.write(yaml.safe_dump(chart_values(a.values), default_flow_style=False,
                                            sort_keys=False, width=float("inf")))
            return 0
        files = generated_files()
        stale = []
        if a.check:
            expected_crds = {p for p in files if p.startswith(CHART_CRDS + os.sep)}
            present = {os.path.join(CHART_CRDS, n) for n in os.listdir(CHART_CRDS)} if os.path.isdir(CHART_CRDS) else set()
            stale += sorted(present - expected_crds)  # left over from a removed kind
            for path, content in files.items():
                if content is None:
                    content = manifest_text().encode()
                try:
                    with open(path, "rb") as f:
                        if f.read() == content:
                            continue
                except FileNotFoundError:
                    pass
                stale.append(path)
            if stale:
                print("stale generated files (run `python3 deploy/render.py`):", file=sys.stderr)
                for s in stale:
                    print("  " + os.path.relpath(s, ROOT), file=sys.stderr)
                return 1
            print("deploy: generated files are up to date")
            return 0
        os.makedirs(CHART_CRDS, exist_ok=True)
        for n in os.listdir(CHART_CRDS):
            if os.path.join(CHART_CRDS, n) not in files:
                os.remove(os.path.join(CHART_CRDS, n))
        for path, content in files.items():
            if content is None:
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
        with open(MANIFEST, "wb") as f:
            f.write(manifest_text().encode())
        for path in files:
            print("wrote " + os.path.relpath(path, ROOT))
        return 0
    except RenderError as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
