#!/usr/bin/env bash
# Checks deploy/helm/ferrolb with Helm's own Go library (the PyPI package helm-sdkpy; Helm itself
# is not packaged in Debian here), once with the chart's default values and once per values file:
# deploy/manifests/values.yaml, deploy/examples/values/*.yaml and deploy/helm/ferrolb/ci/*.yaml:
#
#  1. helm lint;
#  2. Helm's rendering (deploy/helm_render.py: a real `helm install` against a throw-away fake
#     API server, reading the rendered manifest out of Helm's release record) must equal
#     deploy/render.py's, object for object and in order (render.py compare-helm), so the plain
#     manifest is what Helm would install.
#
# helm-sdkpy's Lint takes no values argument, so each values file is merged over the chart's
# values.yaml (Helm's coalescing rules, by deploy/render.py merge-values) into a copy of the chart.
# Warnings fail like errors (helm lint --strict); INFO messages (e.g. "icon is recommended") pass.
#
# The venv ($FERROLB_HELM_VENV, default target/helm-venv) is created on first use; that needs
# python3-venv and network access to PyPI. `deploy/lint.sh --setup` only prepares it.
# Exits non-zero on any lint failure.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FERROLB_HELM_VENV:-target/helm-venv}
HELM_SDKPY_VERSION=0.1.32
if ! "$VENV/bin/python" -c "import helm_sdkpy" 2>/dev/null; then
  echo "lint.sh: creating $VENV with helm-sdkpy $HELM_SDKPY_VERSION" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --ignore-requires-python \
    "helm-sdkpy==$HELM_SDKPY_VERSION" cffi >&2
fi
if [ "${1:-}" = "--setup" ]; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

charts=(deploy/helm/ferrolb)
labels=("default values")
n=0
for values in deploy/manifests/values.yaml deploy/examples/values/*.yaml deploy/helm/ferrolb/ci/*.yaml; do
  n=$((n + 1))
  # The copy keeps the directory name: Helm wants it equal to the chart's name.
  mkdir -p "$tmp/$n"
  cp -r deploy/helm/ferrolb "$tmp/$n/ferrolb"
  python3 deploy/render.py merge-values -f "$values" > "$tmp/$n/ferrolb/values.yaml"
  charts+=("$tmp/$n/ferrolb")
  labels+=("$values")
done

status=0
for i in "${!charts[@]}"; do
  # 2. Helm renders the same objects as render.py.
  if [ "$i" -gt 0 ]; then
    python3 deploy/render.py merge-values --json -f "${labels[$i]}" > "$tmp/values-$i.json"
    render_args=(-f "${labels[$i]}")
  else
    python3 deploy/render.py merge-values --json > "$tmp/values-$i.json"
    render_args=()
  fi
  if "$VENV/bin/python" deploy/helm_render.py deploy/helm/ferrolb "$tmp/values-$i.json" \
       > "$tmp/helm-$i.yaml" 2> "$tmp/helm-$i.err" \
     && python3 deploy/render.py compare-helm "$tmp/helm-$i.yaml" "${render_args[@]}" 2> "$tmp/cmp-$i.err"; then
    echo "ok   helm template = render.py (${labels[$i]})"
  else
    status=1
    echo "FAIL helm template = render.py (${labels[$i]})"
    cat "$tmp/helm-$i.err" "$tmp/cmp-$i.err" 2> /dev/null
  fi
  # 1. helm lint.
  if out=$("$VENV/bin/python" - "${charts[$i]}" <<'PY'
import asyncio, json, sys
import helm_sdkpy

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
config = helm_sdkpy.Configuration(namespace="ferrolb-system")
result = asyncio.run(helm_sdkpy.Lint(config).run(sys.argv[1]))
bad = False
for m in result.get("Messages") or []:
    sev = m.get("Severity", 0)
    # helm-sdkpy serialises the Go error as {}: only the severity and the path survive.
    print(f"  [{SEVERITY.get(sev, sev)}] {m.get('Path')}: {json.dumps(m.get('Err'))}")
    bad |= sev >= 2
if result.get("Errors"):
    bad = True
if result.get("TotalChartsLinted") != 1:
    print(f"  linted {result.get('TotalChartsLinted')} charts, expected 1")
    bad = True
sys.exit(1 if bad else 0)
PY
  ); then
    echo "ok   helm lint (${labels[$i]})"
  else
    status=1
    echo "FAIL helm lint (${labels[$i]})"
    echo "$out"
    # Helm's message text is lost on the way; our renderer usually names the problem.
    if [ "$i" -gt 0 ]; then
      python3 deploy/render.py template -f "${labels[$i]}" > /dev/null || true
    else
      python3 deploy/render.py template > /dev/null || true
    fi
  fi
done
exit $status
