#!/usr/bin/env bash
# q18 on 10 M events with the LSM state backend and 1 s checkpoints, in a
# memory cgroup capped at CAP MiB (page cache included), SIGKILLed KILLS
# times at random moments and restarted each time, then run to its end.
# Prints the final sha256 (the reference: bb71adeb...) and the last run's peak RSS.
# Needs root (it makes a cgroup) and a release build:
#   cargo build --release -p weir-cli && sudo scripts/q18-under-a-memory-cap.sh 1280 4
set -euo pipefail
cap=${1:-1280}
kills=${2:-4}
weir=$(realpath "${WEIR:-target/release/weir}")
work=$(mktemp -d)
cd "$work"
if [ -d /sys/fs/cgroup/memory ]; then
  cg=/sys/fs/cgroup/memory/weir-cap
  mkdir -p $cg
  echo -1 > $cg/memory.memsw.limit_in_bytes 2>/dev/null || true
  echo $((cap * 1024 * 1024)) > $cg/memory.limit_in_bytes
else
  cg=/sys/fs/cgroup/weir-cap
  mkdir -p $cg
  echo $((cap * 1024 * 1024)) > $cg/memory.max
fi
run() {
  bash -c 'echo $$ > '"$cg"'/cgroup.procs; exec "$@"' _ \
    /usr/bin/time -f "peak RSS %M KiB, %e s" "$weir" nexmark --quiet --query q18 --events 10000000 --out o \
    --state-dir st --resident-keys 50000 --checkpoint-dir ck --checkpoint-interval 1s
}
for i in $(seq "$kills"); do
  t=$((8 + RANDOM % 20))
  run &
  sleep $t
  pkill -9 -x weir || true
  wait || true
  echo "killed after $t s"
done
run
sha256sum o/q18.csv
echo "work folder: $work"
