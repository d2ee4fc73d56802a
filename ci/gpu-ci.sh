#!/usr/bin/env bash
# The GPU runner's job (.github/workflows/gpu.yml), in order:
#
# 1. ci/cuda-check.sh: the `cuda` feature's tests, the killed-and-resumed deterministic run, and
#    the GPU benchmarks (per-pass conv timings, training images/s as JSON lines), and the side by
#    side with PyTorch where PYTHON names a Python whose torch sees the GPU (the sections that
#    only measure, jobs and estimate, are left to a person running cuda-check.sh);
# 2. a CI-sized CIFAR sweep on the GPU: the smoke profile of every CIFAR experiment, with its
#    tables, verdicts and report;
# 3. `suite regress`: the sweep's accuracy against ci/baselines/cpu-smoke.json (the smoke bands
#    are binomial on 20 test images, wide enough for the GPU's different rounding), and the
#    training throughput against ci/baselines/cuda-<gpu model>.json for this runner's GPU. A GPU
#    model without a committed baseline fails step 3 with the command that writes one.
#
# Everything lands in OUT_DIR (the workflow uploads it). Exit 1 when a step fails.
# Usage: ci/gpu-ci.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: ci/gpu-ci.sh OUT_DIR}
device=${DEVICE:-cuda:0}
data=${RESNET_REPRO_DATA:-../shared/data}
mkdir -p "$out"
out=$(cd "$out" && pwd)

sections=tests,resume,bench,ops
if [[ -n ${PYTHON:-} ]]; then
  sections+=,compare
fi
# A failed check still leaves the sweep and the regressions to run, and their files to upload.
status=0
DEVICE=$device ci/cuda-check.sh --only "$sections" "$out/cuda-check" || status=1
suite=target/release/suite

echo "== smoke sweep on $device"
"$suite" --data "cifar10=$data/cifar10" reproduce table6 fig1 fig6 fig7 ablation-skip \
  --profile smoke --device "$device" --no-probe --quiet --out "$out/results" \
  --report --reports "$out/reports"

echo "== accuracy against ci/baselines/cpu-smoke.json"
"$suite" regress --baseline ci/baselines/cpu-smoke.json --out "$out/results" |
  tee "$out/regress-accuracy.md" || status=1

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
model=$(printf '%s' "$gpu" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-*//; s/-*$//')
baseline=ci/baselines/cuda-$model.json
mkdir -p "$out/no-sweeps"
echo "== throughput against $baseline"
if [[ -f $baseline ]]; then
  "$suite" regress --baseline "$baseline" --out "$out/no-sweeps" \
    --bench "$out/cuda-check/train.jsonl" | tee "$out/regress-throughput.md" || status=1
else
  echo "no throughput baseline for $gpu: write one on this runner with" >&2
  echo "  $suite regress --write-baseline --baseline $baseline --out $out/no-sweeps --bench $out/cuda-check/train.jsonl" >&2
  status=1
fi
exit "$status"
