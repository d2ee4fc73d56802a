#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU, a Rust toolchain, the CUDA toolkit and cuDNN:
#
# 1. the `cuda` feature's tests: cuDNN's conv forward, backward data and backward filter and its
#    batch norm against the CPU kernels over the nets' shapes and odd ones, and a ResNet-20 run of
#    50 steps on the GPU against the CPU loss trajectory;
# 2. per-pass conv timings on the GPU at the CIFAR shapes (`suite bench op --device cuda:0`);
# 3. training images/s on the GPU with the fast kernels (cuDNN conv) and stock candle, side by
#    side, and against PyTorch on the same GPU when a python with CUDA torch is given.
#
# Usage: ci/cuda-check.sh [OUT_DIR]   (default: a temporary directory; JSON lines land there)
#   PYTHON=python3 ci/cuda-check.sh /tmp/cuda-check
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
device=${DEVICE:-cuda:0}
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this check needs an NVIDIA GPU" >&2; exit 2; }
command -v nvcc >/dev/null || { echo "no nvcc: install the CUDA toolkit (and cuDNN)" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.csv"

data=${RESNET_REPRO_DATA:-../shared/data}
if [[ ! -d $data/cifar10/sample ]]; then
  echo "warning: no CIFAR-10 sample at $data/cifar10/sample (set RESNET_REPRO_DATA):" \
    "the GPU loss-trajectory test will skip" >&2
fi

echo "== tests (--features cuda)"
cargo test --release --locked -p kernels --features cuda --test cuda
cargo test --release --locked -p trainer --features cuda --test training -- cudnn

echo "== conv passes on $device"
cargo build --release --locked -p suite --features cuda
suite=target/release/suite
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
  DEVICE=$device PYTHON=$PYTHON STEPS=20 bench/compare.sh 3 resnet20:128 resnet56:128 resnet50:64 |
    tee "$out/compare.txt"
fi
echo "results in $out"
