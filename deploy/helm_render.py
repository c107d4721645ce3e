#!/usr/bin/env python3
"""Renders the chart with Helm's own engine, for comparing with deploy/render.py.

helm-sdkpy (Helm's Go library from Python) has no template action, but it has Install. So this
script starts a throw-away, in-memory fake Kubernetes API server on 127.0.0.1 (discovery for the
kinds the chart uses, create/get/list/update; CRDs report Established), runs a real `helm
install` against it, and reads the rendered manifest (what `helm template` prints, without the
CRDs) out of the release record Helm stores before it creates the objects; the record is then
refused, which ends the install. It prints that manifest, for deploy/lint.sh to compare with
render.py's output (`render.py compare-helm`).

Nothing leaves the machine; no cluster is touched.

Run with the helm-sdkpy venv's python (see deploy/lint.sh):
  target/helm-venv/bin/python deploy/helm_render.py CHART_DIR [VALUES.json]
VALUES.json: the user values (overlay) as JSON, as `helm install -f` would take them.
"""

import asyncio
import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

RELEASE = "ferrolb"
NAMESPACE = "ferrolb-system"

# (group, version) -> [(plural, kind, namespaced)]
RESOURCES = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("serviceaccounts", "ServiceAccount", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("configmaps", "ConfigMap", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True), ("daemonsets", "DaemonSet", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    ("apiextensions.k8s.io", "v1"): [
        ("customresourcedefinitions", "CustomResourceDefinition", False)
    ],
    ("monitoring.coreos.com", "v1"): [
        ("servicemonitors", "ServiceMonitor", True),
        ("podmonitors", "PodMonitor", True),
    ],
    ("ferrolb.io", "v1beta1"): [
        ("ipaddresspools", "IPAddressPool", True),
        ("l2advertisements", "L2Advertisement", True),
        ("bgpadvertisements", "BGPAdvertisement", True),
        ("bgppeers", "BGPPeer", True),
        ("bfdprofiles", "BFDProfile", True),
        ("communities", "Community", True),
    ],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def pb_fields(buf):
    """Top-level fields of a protobuf message: [(number, wiretype, value)]."""
    out, i = [], 0

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(buf):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            out.append((num, wt, varint()))
        elif wt == 2:
            n = varint()
            out.append((num, wt, buf[i:i + n]))
            i += n
        elif wt == 1:
            out.append((num, wt, buf[i:i + 8]))
            i += 8
        elif wt == 5:
            out.append((num, wt, buf[i:i + 4]))
            i += 4
        else:
            raise ValueError(f"protobuf wire type {wt}")
    return out


def release_manifest(body):
    """The rendered manifest inside Helm's release record: a v1 Secret in Kubernetes' protobuf
    envelope ("k8s\\0", runtime.Unknown{raw: 2}), data (field 2) entry "release" holding
    base64(gzip(JSON release)), whose "manifest" is what `helm template` prints."""
    import base64
    import gzip

    if not body.startswith(b"k8s\x00"):
        raise ValueError("not a Kubernetes protobuf body")
    raw = next(v for n, _, v in pb_fields(body[4:]) if n == 2)
    for n, _, entry in pb_fields(raw):
        if n != 2:
            continue
        kv = {k: v for k, _, v in pb_fields(entry)}
        if kv.get(1) == b"release":
            release = json.loads(gzip.decompress(base64.b64decode(kv[2])))
            return release["manifest"]
    raise ValueError("no release data in the record")


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.objects = {}  # (gv, plural, namespace, name) -> object
        self.rv = 0
        self.manifest = None  # Helm's rendering, from its release record


STORE = Store()


def parse_path(path):
    """-> (group, version, namespace, plural, name) or None."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        gv, rest = ("", "v1"), parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        gv, rest = (parts[1], parts[2]), parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":  # /namespaces/NS/PLURAL[/NAME]
        ns, rest = rest[1], rest[2:]
    if not rest:
        return None
    return gv, ns, rest[0], (rest[1] if len(rest) > 1 else None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason, message):
        self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "message": message, "code": code})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) or b"{}"
        try:
            return json.loads(raw)
        except ValueError:
            sys.stderr.write(f"helm_render.py: {self.command} {self.path}: not JSON "
                             f"({self.headers.get('Content-Type')}): {raw[:200]!r}\n")
            raise

    def discovery(self, path):
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = []
            for (g, v) in RESOURCES:
                if g:
                    gv = {"groupVersion": f"{g}/{v}", "version": v}
                    groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for (g, v), res in RESOURCES.items():
            if path == (f"/apis/{g}/{v}" if g else "/api/v1"):
                return {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": f"{g}/{v}" if g else v,
                    "resources": [
                        {"name": p, "singularName": k.lower(), "namespaced": nsd, "kind": k,
                         "verbs": VERBS}
                        for (p, k, nsd) in res
                    ],
                }
        return None

    def do_GET(self):
        url = urlparse(self.path)
        d = self.discovery(url.path.rstrip("/") or "/")
        if d is not None:
            return self.reply(200, d)
        p = parse_path(url.path)
        if p is None:
            return self.status(404, "NotFound", url.path)
        gv, ns, plural, name = p
        with STORE.lock:
            if name:
                obj = STORE.objects.get((gv, plural, ns, name))
                if obj is None:
                    return self.status(404, "NotFound", f'{plural} "{name}" not found')
                return self.reply(200, obj)
            if "watch" in parse_qs(url.query):
                return self.status(405, "MethodNotAllowed", "no watches here")
            want = {}
            for term in parse_qs(url.query).get("labelSelector", [""])[0].split(","):
                if "=" in term:
                    k, v = term.split("=", 1)
                    want[k] = v
            items = [
                o for (g2, p2, n2, _), o in sorted(STORE.objects.items())
                if g2 == gv and p2 == plural and (ns is None or n2 == ns)
                and all(o["metadata"].get("labels", {}).get(k) == v for k, v in want.items())
            ]
            return self.reply(200, {"kind": "List", "apiVersion": "v1",
                                    "metadata": {"resourceVersion": str(STORE.rv)}, "items": items})

    def write(self, create):
        url = urlparse(self.path)
        p = parse_path(url.path)
        if p is None:
            return self.status(404, "NotFound", url.path)
        gv, ns, plural, name = p
        obj = self.body()
        name = name or obj.get("metadata", {}).get("name")
        key = (gv, plural, ns, name)
        with STORE.lock:
            if create and key in STORE.objects:
                return self.status(409, "AlreadyExists", f'{plural} "{name}" already exists')
            if not create and key not in STORE.objects:
                return self.status(404, "NotFound", f'{plural} "{name}" not found')
            STORE.rv += 1
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = str(STORE.rv)
            meta.setdefault("uid", f"uid-{STORE.rv}")
            meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            if obj.get("kind") == "CustomResourceDefinition":
                obj["status"] = {"conditions": [
                    {"type": "Established", "status": "True"},
                    {"type": "NamesAccepted", "status": "True"},
                ], "acceptedNames": obj["spec"]["names"]}
            STORE.objects[key] = obj
        return self.reply(201 if create else 200, obj)

    def do_POST(self):
        if self.headers.get("Content-Type", "").startswith("application/vnd.kubernetes.protobuf"):
            # Helm's release record (its Secret driver speaks protobuf): it carries the rendered
            # manifest, which is all this script wants; refuse it, which ends the install.
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            try:
                with STORE.lock:
                    STORE.manifest = release_manifest(body)
            except Exception as e:  # noqa: BLE001  (report, then refuse)
                sys.stderr.write(f"helm_render.py: cannot read the release record: {e}\n")
            return self.status(503, "ServiceUnavailable", "rendering captured; install stops here")
        self.write(create=True)

    def do_PUT(self):
        self.write(create=False)

    def do_PATCH(self):
        self.status(405, "MethodNotAllowed", "patch is not supported by this fake")

    def do_DELETE(self):
        self.status(405, "MethodNotAllowed", "delete is not supported by this fake")


def main():
    chart = sys.argv[1]
    values = None
    if len(sys.argv) > 2:
        with open(sys.argv[2], encoding="utf-8") as f:
            values = json.load(f)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    kubeconfig = json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                  "namespace": NAMESPACE}}],
    })
    # Release records in memory: the fake server speaks JSON only, the Secret driver protobuf.
    os.environ["HELM_DRIVER"] = "memory"
    import helm_sdkpy  # noqa: E402  (only in the venv)

    error = None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kubeconfig")  # JSON is YAML
        with open(path, "w", encoding="utf-8") as f:
            f.write(kubeconfig)
        config = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=path)
        try:
            asyncio.run(helm_sdkpy.Install(config).run(RELEASE, chart, values=values,
                                                       wait=False, timeout=60))
        except helm_sdkpy.HelmError as e:
            error = e  # expected: the release record is refused once read
    server.shutdown()
    if STORE.manifest is None:
        sys.stderr.write(f"helm_render.py: Helm did not render: {error}\n")
        return 1
    sys.stdout.write(STORE.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
