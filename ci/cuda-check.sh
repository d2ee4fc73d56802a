#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU, a Rust toolchain, the CUDA toolkit and cuDNN:
#
# 1. the `cuda` feature's tests: cuDNN's conv forward, backward data and backward filter and its
#    batch norm against the CPU kernels over the nets' shapes and odd ones, a ResNet-20 run of
#    50 steps on the GPU against the CPU loss trajectory, and no device-to-host copy inside a
#    training step (CIFAR and ImageNet nets); then `suite train --deterministic` on the GPU killed
#    and resumed against an uninterrupted run, weights compared bit for bit (and the same without
#    the flag, reported, not required);
# 2. per-pass conv timings on the GPU at the CIFAR shapes (`suite bench op --device cuda:0`);
# 3. training images/s on the GPU with the fast kernels (cuDNN conv) and stock candle, side by
#    side, and against PyTorch on the same GPU when a python with CUDA torch is given.
#
# Usage: ci/cuda-check.sh [--bundle DIR] [OUT_DIR]   (default OUT_DIR: a temporary directory;
#        JSON lines land there)
#   PYTHON=python3 ci/cuda-check.sh /tmp/cuda-check
# With --bundle, the binaries and data come from `ci/cuda-bundle.sh DIR`, built on another machine,
# and this machine needs no Rust toolchain or nvcc: only the driver and the CUDA 13 libraries
# (cuBLAS, cuRAND, NVRTC, cuDNN, cudart; those of Python's NVIDIA wheels are found by themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=
if [[ ${1:-} == --bundle ]]; then
  bundle=${2:?--bundle takes the directory ci/cuda-bundle.sh wrote}
  shift 2
fi
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
  cudnn_trajectory_test() { "$unpacked/bin/trainer-training-tests" cudnn; }
  host_copy_test() { "$unpacked/bin/trainer-cuda-tests"; }
  build_suite() { :; }
else
  command -v nvcc >/dev/null || { echo "no nvcc: install the CUDA toolkit (and cuDNN)" >&2; exit 2; }
  suite=target/release/suite
  kernels_tests() { cargo test --release --locked -p kernels --features cuda --test cuda; }
  cudnn_trajectory_test() { cargo test --release --locked -p trainer --features cuda --test training -- cudnn; }
  host_copy_test() { cargo test --release --locked -p trainer --features cuda --test cuda; }
  build_suite() { cargo build --release --locked -p suite --features cuda; }
fi

data=${RESNET_REPRO_DATA:-../shared/data}
if [[ ! -d $data/cifar10/sample ]]; then
  echo "warning: no CIFAR-10 sample at $data/cifar10/sample (set RESNET_REPRO_DATA):" \
    "the GPU loss-trajectory test will skip" >&2
fi

echo "== tests (--features cuda)"
kernels_tests
cudnn_trajectory_test
host_copy_test

build_suite
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
: >"$out/resume.txt"
if [[ -d $data/cifar10/sample ]]; then
  echo "== killed and resumed runs on $device"
  resume_check deterministic --deterministic
  resume_check fastest || echo "(allowed: the fastest algorithms are not bitwise reproducible)"
fi

echo "== conv passes on $device"
: >"$out/ops.jsonl"
for shape in "16 16 32 1" "16 32 32 2" "32 32 16 1" "32 64 16 2" "64 64 8 1"; do
  read -r c o s stride <<<"$shape"
  "$suite" bench op --device "$device" --batch 128 --channels "$c" --out-channels "$o" --size "$s" \
    --stride "$stride" --repeats 20 --json | tee -a "$out/ops.jsonl"
done

echo "== training on $device: fast (cuDNN conv) and stock kernels"
: >"$out/train.jsonl"
for case in resnet20:128 resnet56:128 resnet110:128 resnet50:64; do
  model=${case%%:*} batch=${case##*:}
  for kernels in fast stock; do
    "$suite" bench train --device "$device" --model "$model" --batch "$batch" --kernels "$kernels" \
      --steps 20 --json | tee -a "$out/train.jsonl"
  done
done

if [[ -n ${PYTHON:-} ]] && "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "== against PyTorch on $device"
  SUITE=$suite DEVICE=$device PYTHON=$PYTHON STEPS=20 bench/compare.sh 3 resnet20:128 resnet56:128 resnet50:64 |
    tee "$out/compare.txt"
fi
echo "results in $out"
