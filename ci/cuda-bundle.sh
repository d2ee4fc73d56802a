#!/usr/bin/env bash
# Builds, on a machine without a GPU, everything `ci/cuda-check.sh` runs, for a GPU machine that
# has the CUDA libraries and Python but no Rust toolchain: the `suite` binary and the `cuda`
# feature's three test binaries, built with `--features cuda` against link stubs
# (`ci/cuda-link-stubs.sh`) and stripped, plus the CIFAR-10 sample the GPU loss-trajectory test
# reads. They are packed into one xz tarball (about 25 MB) inside DIR, so DIR can travel beside the
# working tree; `ci/cuda-check.sh --bundle DIR` unpacks and runs it there.
#
# Usage: ci/cuda-bundle.sh [DIR]   (default: .cuda-bundle, which git ignores)
#   ci/cuda-bundle.sh                                            # here
#   ci/cuda-check.sh --bundle .cuda-bundle /tmp/cuda-check       # then on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.cuda-bundle}
data=${RESNET_REPRO_DATA:-../shared/data}
[[ -f $data/cifar10/sample/train.parquet ]] || {
  echo "no CIFAR-10 sample at $data/cifar10/sample (set RESNET_REPRO_DATA)" >&2
  exit 2
}
source ci/cuda-toolkit.sh
source ci/cuda-link-stubs.sh

echo "== building with --features cuda (release)"
cargo build --release --locked -p suite --features cuda
# The test binaries in one cargo call, so they share the suite's build of candle (one feature set),
# and their paths from cargo's own report of what it built.
read -r kernels_tests trainer_tests trainer_cuda_tests < <(
  cargo test --release --locked --no-run --message-format=json -p kernels -p trainer \
    --features kernels/cuda,trainer/cuda --test cuda --test training |
    python3 -c 'import json, sys
built = {(m["package_id"], m["target"]["name"]): m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]}
path = lambda pkg, test: next(p for (i, t), p in built.items() if t == test and f"/{pkg}#" in i)
print(path("kernels", "cuda"), path("trainer", "training"), path("trainer", "cuda"))'
)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/data/cifar10/sample"
objcopy --strip-all target/release/suite "$stage/bin/suite"
objcopy --strip-all "$kernels_tests" "$stage/bin/kernels-cuda-tests"
objcopy --strip-all "$trainer_tests" "$stage/bin/trainer-training-tests"
# Stripping keeps the dynamic symbol table, and so the copy counter's definitions of the driver's
# copy functions (tests/cuda.rs).
objcopy --strip-all "$trainer_cuda_tests" "$stage/bin/trainer-cuda-tests"
cp "$data"/cifar10/sample/*.parquet "$stage/data/cifar10/sample/"
git rev-parse HEAD >"$stage/commit"
git status --porcelain --untracked-files=no >"$stage/uncommitted"

mkdir -p "$dir"
rm -f "$dir/bundle.tar.xz"
XZ_OPT=-T0 tar -C "$stage" -cJf "$dir/bundle.tar.xz.partial" .
mv "$dir/bundle.tar.xz.partial" "$dir/bundle.tar.xz"
du -h "$dir/bundle.tar.xz"
