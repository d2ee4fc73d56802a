#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU, a Rust toolchain, the CUDA toolkit and cuDNN:
#
# - tests: the `cuda` feature's tests: cuDNN's conv forward, backward data and backward filter
#   and its batch norm against the CPU kernels over the nets' shapes and odd ones; whole nets
#   forward and backward against the CPU; ResNet-20 and ResNet-56 trained for hundreds of steps
#   on the GPU against the CPU's loss trajectory, with no NaN and flat device memory; no
#   device-to-host copy inside a training step (CIFAR and ImageNet nets);
# - resume: `suite train --deterministic` on the GPU killed and resumed against an uninterrupted
#   run, weights compared bit for bit (and the same without the flag, reported, not required);
# - bench: training images/s and peak device memory (`suite bench train --json`), and what the
#   fast kernels and the kept memory pool are worth (stock kernels; the driver's pool default);
# - compare: against PyTorch on the same GPU, training and inference (PYTHON with CUDA torch);
# - jobs: several CIFAR runs sharing the GPU (`suite reproduce --jobs N`), total images/s;
# - ops: per-pass conv timings at the CIFAR shapes (`suite bench op --device cuda:0`);
# - estimate: what the paper profiles and the quick ones would take on this GPU (`suite reproduce
#   --dry-run`: each net probed for a few steps at its runs' batch and crop).
#
# Usage: ci/cuda-check.sh [--bundle DIR] [--only SECTIONS] [OUT_DIR]   (default OUT_DIR: a
#        temporary directory; JSON lines land there)
#   PYTHON=python3 ci/cuda-check.sh /tmp/cuda-check
#   ci/cuda-check.sh --only tests,resume,bench /tmp/cuda-check
# Sections, in the order they run: tests, resume, bench, compare (needs PYTHON), jobs, ops,
# estimate.
# With --bundle, the binaries and data come from `ci/cuda-bundle.sh DIR`, built on another machine,
# and this machine needs no Rust toolchain or nvcc: only the driver and the CUDA 13 libraries
# (cuBLAS, cuRAND, NVRTC, cuDNN, cudart; those of Python's NVIDIA wheels are found by themselves).
# The sections' functions are called through `section NAME FUNCTION`, which ShellCheck cannot see.
# shellcheck disable=SC2329
set -euo pipefail
cd "$(dirname "$0")/.."
bundle='' only=''
while [[ ${1:-} == --* ]]; do
  case $1 in
    --bundle) bundle=${2:?--bundle takes the directory ci/cuda-bundle.sh wrote} ;;
    --only) only=${2:?--only takes a comma-separated list of sections} ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
out=${1:-$(mktemp -d)}
mkdir -p "$out"
device=${DEVICE:-cuda:0}
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this check needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.csv"

if [[ -n $bundle ]]; then
  [[ -f $bundle/bundle.tar.xz ]] || { echo "no $bundle/bundle.tar.xz: run ci/cuda-bundle.sh" >&2; exit 2; }
  unpacked=$(mktemp -d)
  trap 'rm -rf "$unpacked"' EXIT
  # Python's tarfile where the image has no xz for tar to call.
  if command -v xz >/dev/null; then
    tar -C "$unpacked" -xJf "$bundle/bundle.tar.xz"
  else
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      "$bundle/bundle.tar.xz" "$unpacked"
  fi
  echo "bundle built from commit $(cat "$unpacked/commit")"
  # The CUDA libraries of Python's NVIDIA wheels (PyTorch's), where no toolkit is on the loader's path.
  wheel_libs=$(python3 - <<'PY' || true
import glob, os, site
dirs = {os.path.dirname(p) for s in site.getsitepackages() for p in glob.glob(f"{s}/nvidia/**/lib*.so*", recursive=True)}
print(":".join(sorted(dirs)))
PY
  )
  if [[ -n $wheel_libs ]]; then
    export LD_LIBRARY_PATH=${wheel_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  export RESNET_REPRO_DATA=$unpacked/data
  suite=$unpacked/bin/suite
  kernels_tests() { "$unpacked/bin/kernels-cuda-tests"; }
  cudnn_trajectory_test() { "$unpacked/bin/trainer-training-tests" cudnn_convs cuda_training; }
  host_copy_test() { "$unpacked/bin/trainer-cuda-tests"; }
  build_suite() { :; }
else
  command -v nvcc >/dev/null || { echo "no nvcc: install the CUDA toolkit (and cuDNN)" >&2; exit 2; }
  suite=target/release/suite
  kernels_tests() { cargo test --release --locked -p kernels --features cuda --test cuda; }
  cudnn_trajectory_test() { cargo test --release --locked -p trainer --features cuda --test training -- cudnn_convs cuda_training; }
  host_copy_test() { cargo test --release --locked -p trainer --features cuda --test cuda; }
  build_suite() { cargo build --release --locked -p suite --features cuda; }
fi

data=${RESNET_REPRO_DATA:-../shared/data}
if [[ ! -d $data/cifar10/sample ]]; then
  echo "warning: no CIFAR-10 sample at $data/cifar10/sample (set RESNET_REPRO_DATA):" \
    "the GPU loss-trajectory test will skip" >&2
fi

# Each section runs on whatever the ones before it did, and a failing one does not stop the rest:
# a GPU hour is scarce, so every figure that can be had is had. Each section's status and seconds
# land in OUT/sections.txt; the exit code is 1 when any failed.
: >"$out/sections.txt"
failed=0
section() {
  local name=$1; shift
  if [[ -n $only && ,$only, != *,$name,* ]]; then
    return 0
  fi
  echo "== $name"
  local start=$SECONDS status=ok rc
  # Not `( ... ) || ...`: on the left of || bash ignores -e inside the subshell too.
  set +e
  ( set -euo pipefail; "$@" )
  rc=$?
  set -e
  if ((rc != 0)); then
    status="FAILED ($rc)"
    failed=1
  fi
  echo "$name: $status, $((SECONDS - start)) s" | tee -a "$out/sections.txt"
}

tests() {
  kernels_tests
  cudnn_trajectory_test
  host_copy_test
}

# A run killed after its first checkpoint and resumed must end on the uninterrupted run's weights,
# bit for bit, under --deterministic; without it cuDNN's timed search may pick other algorithms in
# the resumed process, so that case is only reported.
resume_check() {
  local name=$1; shift
  local args=(train --model resnet20 --iterations 400 --batch 32 --log-every 20
    --checkpoint-every 100 --eval-every 0 --eval-subset 200 --device "$device" --quiet "$@")
  local runs=$out/resume-$name
  rm -rf "$runs"
  "$suite" --data "cifar10=$data/cifar10/sample" "${args[@]}" --out "$runs/whole" >/dev/null
  "$suite" --data "cifar10=$data/cifar10/sample" "${args[@]}" --out "$runs/killed" >/dev/null &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && [[ ! -f $runs/killed/checkpoint.safetensors ]]; do sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ -f $runs/killed/summary.json ]]; then
    echo "resume ($name): the run finished before it could be killed; nothing was resumed" |
      tee -a "$out/resume.txt"
    return 1
  fi
  "$suite" --data "cifar10=$data/cifar10/sample" "${args[@]}" --out "$runs/killed" >/dev/null
  grep -q '"resumes": 1' "$runs/killed/summary.json" || {
    echo "resume ($name): the second session did not resume from the checkpoint" | tee -a "$out/resume.txt"
    return 1
  }
  if cmp -s "$runs/whole/weights.safetensors" "$runs/killed/weights.safetensors"; then
    echo "resume ($name): weights equal bit for bit" | tee -a "$out/resume.txt"
  else
    echo "resume ($name): weights differ" | tee -a "$out/resume.txt"
    return 1
  fi
}

resume() {
  : >"$out/resume.txt"
  [[ -d $data/cifar10/sample ]] || { echo "no CIFAR-10 sample at $data/cifar10/sample" >&2; return 1; }
  resume_check deterministic --deterministic
  resume_check fastest || echo "(allowed: the fastest algorithms are not bitwise reproducible)"
}

ops() {
  : >"$out/ops.jsonl"
  for shape in "16 16 32 1" "16 32 32 2" "32 32 16 1" "32 64 16 2" "64 64 8 1"; do
    read -r c o s stride <<<"$shape"
    "$suite" bench op --device "$device" --batch 128 --channels "$c" --out-channels "$o" --size "$s" \
      --stride "$stride" --repeats 20 --json | tee -a "$out/ops.jsonl"
  done
}

# The fast kernels (cuDNN conv and batch norm) against stock candle, and the memory pool kept
# against the driver's default of returning freed memory at every synchronisation.
bench() {
  : >"$out/train.jsonl"
  : >"$out/variants.jsonl"
  for case in resnet20:128 resnet56:128 resnet110:128 resnet50:64 resnet50:256; do
    IFS=: read -r model batch <<<"$case"
    "$suite" bench train --device "$device" --model "$model" --batch "$batch" --steps 20 --json |
      tee -a "$out/train.jsonl"
  done
  for case in resnet20:128 resnet50:64; do
    IFS=: read -r model batch <<<"$case"
    "$suite" bench train --device "$device" --model "$model" --batch "$batch" --kernels stock \
      --steps 20 --json | tee -a "$out/variants.jsonl"
    RESNET_REPRO_CUDA_POOL=release "$suite" bench train --device "$device" --model "$model" \
      --batch "$batch" --steps 20 --json | sed 's/}$/,"pool":"release"}/' | tee -a "$out/variants.jsonl"
  done
}

# Side by side with PyTorch eager fp32 on the same GPU (cuDNN's benchmark mode on for both):
# training and inference images/s, and peak device memory.
compare() {
  [[ -n ${PYTHON:-} ]] || { echo "PYTHON names no interpreter with CUDA torch" >&2; return 1; }
  "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" ||
    { echo "$PYTHON has no CUDA torch" >&2; return 1; }
  SUITE=$suite DEVICE=$device PYTHON=$PYTHON STEPS=${COMPARE_STEPS:-20} COMPARE_JSON=$out/compare.json \
    bench/compare.sh "${COMPARE_ROUNDS:-2}" resnet20:128 resnet56:128 resnet110:128 resnet50:64 \
    resnet50:256 resnet20:128:inference resnet56:128:inference resnet50:256:inference |
    tee "$out/compare.txt"
}

# Several CIFAR runs sharing the GPU: total images/s for 1, 2, 4 and 8 jobs at once.
jobs() {
  ci/jobs-throughput.sh "$suite" "$device" "$data/cifar10/sample" "$out" 1 2 4 8
}

# The GPU time of the paper's protocol and of the quick profiles, from the sweeps' own plans. The
# probe trains on random tensors, so the ImageNet plans only need a folder to name: a generated one.
estimate() {
  : >"$out/estimates.txt"
  local synth=$out/synth-imagenet results=$out/estimate-results
  "$suite" data synth-imagenet "$synth" --classes 4 >/dev/null
  for profile in quick paper; do
    "$suite" reproduce table6 fig6 fig7 ablation-skip --profile "$profile" --device "$device" \
      --dry-run --data "cifar10=$data/cifar10/sample" --results "$results" | tee -a "$out/estimates.txt"
    "$suite" reproduce table2 table3 --profile "$profile" --device "$device" --dry-run \
      --data "imagenet=$synth" --results "$results" | tee -a "$out/estimates.txt"
  done
}

section tests tests
build_suite
section resume resume
section bench bench
section compare compare
section jobs jobs
section ops ops
section estimate estimate
cat "$out/sections.txt"
echo "results in $out"
exit "$failed"
