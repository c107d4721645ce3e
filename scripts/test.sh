#!/usr/bin/env bash
# The test command of the README: installs what the tests need (once per machine), then runs
# every test of the workspace. Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-lab-packages.sh

# deploy/lint.sh (run by tests/tests/deploy.rs) lints the Helm chart with Helm's own library from
# the PyPI package helm-sdkpy: create its venv (target/helm-venv) once, before the tests run.
deploy/lint.sh --setup || echo "could not prepare target/helm-venv; the helm lint test will fail" >&2

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
