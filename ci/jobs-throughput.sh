#!/usr/bin/env bash
# Total training images/s of several CIFAR runs sharing one device: the same sweep of eight
# ResNet-20 runs (seeds 0 to 7) through `suite reproduce --jobs N` for each N given, each N in a
# fresh results directory, timed from start to end. One JSON line per N lands in OUT/jobs.jsonl:
# the wall time, the training images of all runs, their total images/s, and each run's own images/s.
#
# Usage: ci/jobs-throughput.sh SUITE DEVICE CIFAR_DIR OUT [N ...]   (default N: 1 2 4 8)
#   ci/jobs-throughput.sh target/release/suite cuda:0 ../shared/data/cifar10/sample /tmp/jobs 1 2 4 8
# ITERATIONS (default 200) and BATCH (default 128) size each run; RUNS (default 8) how many.
set -euo pipefail
cd "$(dirname "$0")/.."
suite=${1:?usage: ci/jobs-throughput.sh SUITE DEVICE CIFAR_DIR OUT [N ...]}
device=${2:?device}
cifar=${3:?CIFAR-10 directory}
out=${4:?output directory}
shift 4
(($# > 0)) || set -- 1 2 4 8
iterations=${ITERATIONS:-200}
batch=${BATCH:-128}
runs=${RUNS:-8}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# A sweep config of its own, beside a copy of the paper's reference, so the experiments' configs
# stay as they are.
configs=$(mktemp -d)
trap 'rm -rf "$configs"' EXIT
cp -r configs/reference "$configs/reference"
seeds=$(seq -s, 0 $((runs - 1)))
cat >"$configs/jobs.toml" <<EOF
[experiment]
title = "Runs sharing one device: ResNet-20, seeds 0 to $((runs - 1))"
dataset = "cifar10"

[[runs]]
models = ["resnet20"]
seeds = [$seeds]

[profiles.quick]
about = "$iterations iterations of batch $batch, one evaluation on 200 test images at the end."
iterations = $iterations
batch_size = $batch
eval_subset = 200
log_every = $((iterations / 4 > 0 ? iterations / 4 : 1))
eval_every = $iterations
checkpoint_every = $iterations
EOF

: >"$out/jobs.jsonl"
for n in "$@"; do
  results=$out/jobs-$n
  rm -rf "$results"
  start=$(date +%s.%N)
  "$suite" --data "cifar10=$cifar" reproduce jobs --configs "$configs" --profile quick \
    --device "$device" --jobs "$n" --no-probe --quiet --out "$results" >"$results.log" 2>&1 || {
    echo "jobs $n: the sweep failed; its output:" >&2
    cat "$results.log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  python3 - "$results/jobs/quick/runs.csv" "$n" "$start" "$end" "$batch" "$device" <<'PY' | tee -a "$out/jobs.jsonl"
import csv, json, sys
path, n, start, end, batch, device = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
wall = float(end) - float(start)
images = sum(int(r["iterations"]) * int(batch) for r in rows)
print(json.dumps({
    "device": device, "jobs": int(n), "runs": len(rows), "wall_s": round(wall, 2),
    "train_images": images, "total_images_per_s": round(images / wall, 1),
    "run_images_per_s": [round(float(r["images_per_s"]), 1) for r in rows],
}))
PY
done
