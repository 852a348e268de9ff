#!/usr/bin/env bash
# Side by side in one run: the same benchmarks on two checkouts, alternating
# which goes first, so that a shared machine's noise falls on both alike.
#   bench/compare_trees.sh OLD_TREE NEW_TREE [ROUNDS]
# Each tree needs its own .venv (pip install -e ".[dev]"). Prints every
# run's output, prefixed with the tree's name.
set -u
old=$1 new=$2 rounds=${3:-2}
run() {  # tree label command...
  local tree=$1 label=$2; shift 2
  echo "=== $label: $(basename "$tree") $(git -C "$tree" rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
  (cd "$tree" && timeout 900 .venv/bin/python "$@" 2>&1 | grep -E 'acks|lost|images per user|RSS|commands|p99|outcomes' )
}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order="$old $new"; else order="$new $old"; fi
  for t in $order; do run "$t" in-flight-50 bench/slack_ack.py --only in-flight --model-slots 50; done
  for t in $order; do run "$t" flood bench/slack_ack.py --only flood; done
done
for t in "$old" "$new"; do run "$t" soak-2min bench/soak.py --minutes 2 --rate 5 --users 50 --latency 3; done
