#!/usr/bin/env bash
# The test command of the README: installs what the tests need (once per machine), then runs
# every test of the workspace. Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the network-lab tests drive as real peers and clients.
packages=(bird2 frr gobgpd arping ndisc6 nftables iproute2 iputils-ping tcpdump keepalived python3-yaml python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "not root: cannot install ${missing[*]}; lab tests will skip (they fail under CI=true)" >&2
  fi
fi

# deploy/lint.sh (run by tests/tests/deploy.rs) lints the Helm chart with Helm's own library from
# the PyPI package helm-sdkpy: create its venv (target/helm-venv) once, before the tests run.
# python3-yaml (deploy/render.py) and python3-venv come from the packages above.
deploy/lint.sh --setup || echo "could not prepare target/helm-venv; the helm lint test will fail" >&2

cargo build --workspace --all-targets --locked
cargo test --workspace --locked
