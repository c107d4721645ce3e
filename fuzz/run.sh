#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) with its seeds and dictionary until it has made
# RUNS executions or spent SECONDS, and prints one line of figures per target.
#
#   fuzz/run.sh                      all targets, 10 million runs or 30 minutes each
#   RUNS=1000000 fuzz/run.sh bgp_message
#
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz). Corpora grow under
# target/fuzz-corpus/<target> (not in git); crashes land in fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-10000000}
seconds=${SECONDS_EACH:-1800}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(bgp_message bgp_stream l2_frame membership_datagram config_yaml state_file bfd_packet)
for t in "${targets[@]}"; do
  corpus=../target/fuzz-corpus/$t
  mkdir -p "$corpus"
  seeds=()
  case $t in
    bgp_message) seeds=(../announce/tests/golden/bgp) ;;
    bgp_stream)
      # Whole sessions as one stream each: the golden messages of a session back to back.
      for s in $(ls ../announce/tests/golden/bgp/*.bin | sed 's/-[0-9][0-9]-[a-z]*\.bin$//' | sort -u); do
        cat "$s"-*.bin > "$corpus/session-$(basename "$s")"
      done ;;
    config_yaml) seeds=(seeds/config_yaml) ;;
    state_file) seeds=(seeds/state_file) ;;
  esac
  dict=()
  [ "$t" = config_yaml ] && dict=(-dict=dict/config.dict)
  log=../target/fuzz-$t.log
  start=$(date +%s)
  cargo +nightly fuzz run "$t" "$corpus" "${seeds[@]}" -- \
    -runs="$runs" -max_total_time="$seconds" "${dict[@]}" -print_final_stats=1 >"$log" 2>&1 || {
      echo "$t: FAILED (see $log and fuzz/artifacts/$t)"; continue; }
  took=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  files=$(ls "$corpus" | wc -l)
  echo "$t: $execs executions in ${took}s, coverage $cov edges, corpus $files files, no crash"
done
