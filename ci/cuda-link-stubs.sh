# shellcheck shell=bash
# Source this file after `ci/cuda-toolkit.sh` to link `--features cuda` binaries on a machine
# without the CUDA libraries, so that they can be built here and run on a GPU machine that has the
# libraries but no Rust toolchain (`ci/cuda-bundle.sh`).
#
# A real toolkit ships `lib64/stubs/libcuda.so` for the same purpose: a library with the driver's
# name and symbols and no code, enough for the linker. The PyPI toolkit has none, nor cuBLAS,
# cuRAND, NVRTC or cuDNN, so this writes such stubs for every library the `cuda` feature links
# (symbol names from cudarc's own bindings, the exact set it can call) into `$CUDA_PATH/lib`, where
# cudarc's build script searches (it lists only folders that exist when it first runs, so not a new
# `stubs` folder beside it). Each stub carries the real library's soname, so the binary
# loads the real one at run time. cudart is the PyPI wheel's real library, given the unversioned
# name the linker looks for.

if [ -z "${CUDA_PATH:-}" ] || [ ! -x "${CUDA_PATH}/bin/nvcc" ]; then
  echo "cuda-link-stubs.sh: source ci/cuda-toolkit.sh first (no nvcc under \$CUDA_PATH)" >&2
  return 2
fi

_cudarc_src="$(cargo metadata --format-version 1 --locked --features suite/cuda 2>/dev/null |
  python3 -c 'import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "cudarc"))')" || {
  echo "cuda-link-stubs.sh: cargo metadata did not name cudarc's source" >&2
  return 1
}
_stubs="${CUDA_PATH}/lib"
# cudarc module, the library's link name, and the soname the CUDA 13 wheels and toolkits give it.
while read -r _module _name _soname; do
  _stub_c="$(grep -ohE 'load::<_F>\("[A-Za-z0-9_]+"\)' "${_cudarc_src}/src/${_module}/sys/mod.rs" |
    sed -E 's/.*"(.*)".*/void \1(void) {}/' | sort -u)"
  if [ -z "${_stub_c}" ]; then
    echo "cuda-link-stubs.sh: no symbols in ${_cudarc_src}/src/${_module}/sys/mod.rs" >&2
    return 1
  fi
  printf '%s\n' "${_stub_c}" |
    cc -shared -fPIC -x c - -Wl,-soname,"${_soname}" -o "${_stubs}/lib${_name}.so" || return 1
done <<'LIBS'
driver cuda libcuda.so.1
cublas cublas libcublas.so.13
cublaslt cublasLt libcublasLt.so.13
curand curand libcurand.so.10
nvrtc nvrtc libnvrtc.so.13
cudnn cudnn libcudnn.so.9
LIBS
ln -sf libcudart.so.13 "${CUDA_PATH}/lib/libcudart.so"
unset _cudarc_src _stubs _module _name _soname _stub_c
