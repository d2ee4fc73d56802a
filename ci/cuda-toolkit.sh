# shellcheck shell=bash
# Source this file (`source ci/cuda-toolkit.sh`) to put a CUDA compiler on PATH for building the
# `cuda` feature on a machine without a CUDA toolkit, such as a CPU-only CI runner: candle's CUDA
# kernels compile to PTX with nvcc, which needs no GPU. NVIDIA publishes nvcc, its headers and
# NVVM as wheels on PyPI; they are fetched once into the user cache and unpacked into one tree laid
# out like a toolkit install. This is enough to type-check and lint (`cargo clippy --features
# suite/cuda`); linking test binaries also needs the driver library and cuBLAS, cuRAND, NVRTC and
# cuDNN, which a GPU machine's toolkit has.
#
# The version (13.0) matches the 580 drivers of the GPU runners. Where `nvcc` is already on PATH
# (a real toolkit), nothing is fetched.

if ! command -v nvcc >/dev/null 2>&1; then
  _cuda_version=13.0.88
  _cuda_root="${XDG_CACHE_HOME:-$HOME/.cache}/resnet-repro/cuda-${_cuda_version}"
  if [ ! -x "${_cuda_root}/nvidia/cu13/bin/nvcc" ]; then
    echo "fetching nvcc ${_cuda_version} from PyPI into ${_cuda_root}" >&2
    _cuda_wheels="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "${_cuda_wheels}" \
      "nvidia-cuda-nvcc==${_cuda_version}" "nvidia-cuda-crt==${_cuda_version}" \
      "nvidia-nvvm==${_cuda_version}" "nvidia-cuda-runtime==${_cuda_version}" \
      "nvidia-cuda-cccl==13.0.85" || return 1
    rm -rf "${_cuda_root}.partial" && mkdir -p "${_cuda_root}.partial"
    for _wheel in "${_cuda_wheels}"/*.whl; do
      python3 -m zipfile -e "${_wheel}" "${_cuda_root}.partial" || return 1
    done
    # Wheels do not keep the executable bit.
    chmod +x "${_cuda_root}.partial"/nvidia/cu13/bin/* "${_cuda_root}.partial"/nvidia/cu13/nvvm/bin/*
    rm -rf "${_cuda_wheels}" "${_cuda_root}" && mv "${_cuda_root}.partial" "${_cuda_root}"
  fi
  export CUDA_PATH="${_cuda_root}/nvidia/cu13"
  export PATH="${CUDA_PATH}/bin:${PATH}"
fi
# Without nvidia-smi, candle's kernel build needs the target architecture named: Hopper (H100 and
# H200) unless the caller says otherwise.
if ! command -v nvidia-smi >/dev/null 2>&1; then
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
fi
nvcc --version | tail -n 2
