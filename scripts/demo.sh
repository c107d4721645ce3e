#!/usr/bin/env bash
# The README's first command: installs the lab packages if missing (root), builds ferrolb and the
# lab, and runs the demo: ferrolb standalone on two lab nodes, a client reaching a Service, and a
# timed failover when the announcing node dies. Everything runs inside network namespaces it
# creates (10.0.0.0/24, fd00::/64) and is torn down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-lab-packages.sh
cargo build --locked -p ferrolb-standalone -p ferrolb-tests --bins
exec ./target/debug/lab demo --ferrolb ./target/debug/ferrolb
