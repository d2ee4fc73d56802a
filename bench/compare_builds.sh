#!/usr/bin/env bash
# Interleaves `suite bench op` of two or more builds (A, B, A, B, ...) at one conv shape and prints,
# per build, the best and median GFLOP/s of each conv pass alone and of the 1024 sgemm measured in
# the same processes, and the median of each pass's share of the sgemm of its own process.
# On a shared, noisy machine only builds compared in one such run can be told apart.
#
# Usage: bench/compare_builds.sh ROUNDS CHANNELS[:OUT_CHANNELS] SIZE STRIDE SUITE_BINARY...
#   cp target/release/suite /tmp/suite-before   # then change the code and rebuild
#   bench/compare_builds.sh 5 16:32 32 2 /tmp/suite-before target/release/suite
# (16:32 is ResNet-20's first strided conv, 16 channels in and 32 out; 16 alone is 16 to 16.)
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# < 5)); then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
rounds=$1 size=$3 stride=$4
channels=${2%%:*} out=()
[[ $2 == *:* ]] && out=(--out-channels "${2#*:}")
shift 4
for b in "$@"; do [[ -x $b ]] || { echo "not an executable: $b" >&2; exit 2; }; done
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((r = 1; r <= rounds; r++)); do
  for b in "$@"; do
    echo "round $r/$rounds: $b" >&2
    printf '%s\t' "$b" >>"$results"
    "$b" bench op --batch 128 --channels "$channels" "${out[@]}" \
      --size "$size" --stride "$stride" --repeats 15 --json >>"$results"
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
passes = ["conv forward, pass alone", "conv input gradient, pass alone",
          "conv weight gradient, pass alone", "sgemm 1024 (reference)"]
runs = {}
for line in open(sys.argv[1]):
    build, obj = line.split("\t", 1)
    ops = {o["op"]: o["gflop_per_s"] for o in json.loads(obj)["ops"]}
    runs.setdefault(build, []).append([ops[p] for p in passes])
print(f"{'build':<28}{'':>8}{'forward':>10}{'input grad':>12}{'weight grad':>13}{'sgemm':>8}   shares of sgemm")
for build, rows in runs.items():
    # A share is taken within one process (pass and sgemm side by side), then summarised: the
    # machine's speed drifts between processes far more than within one.
    # The median only: a process whose sgemm ran slow gives shares past 100%.
    shares = [[v / row[3] for v in row[:3]] for row in rows]
    for label, pick in (("best", max), ("median", statistics.median)):
        fwd, ig, wg, sgemm = (pick(col) for col in zip(*rows))
        share = ""
        if label == "median":
            share = " ".join(f"{pick(col):4.0%}" for col in zip(*shares))
        name = build[-28:] if label == "best" else ""
        print(f"{name:<28}{label:>8}{fwd:10.1f}{ig:12.1f}{wg:13.1f}{sgemm:8.1f}   {share}")
PY
