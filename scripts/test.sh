#!/usr/bin/env bash
# The test command of the README: installs what the tests need (once per machine), builds the
# real Kubernetes control plane and Helm from the pinned Go modules when they are not in the
# machine's cache yet, then runs every test of the workspace. Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-lab-packages.sh

# kube-apiserver, kube-controller-manager, kube-proxy, kubectl and helm (tools/): a cold build
# takes about 10 minutes on 2 cores, a warm run nothing. The tests find them through this variable.
FERROLB_TOOLS_BIN=$(./scripts/build-tools.sh | tail -n 1)
export FERROLB_TOOLS_BIN

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
