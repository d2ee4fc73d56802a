#!/usr/bin/env bash
# Interleaves `suite bench train` with the PyTorch reference (A, B, A, B, ...) on this machine and
# prints suite/PyTorch images/s ratios (median, min and max over the rounds) and each process's
# peak resident memory. Only ratios measured
# in one run like this count; the machine may be shared and noisy.
#
# Usage: bench/compare.sh [ROUNDS] [MODEL:BATCH ...]
#   bench/compare.sh 3 resnet20:128 resnet56:128 resnet50:16
# DEVICE=cuda:0 compares on a GPU (a build with `--features cuda`; PyTorch with CUDA).
# Needs: a release build (cargo build --release -p suite) and .venv with torch (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
cases=("${@:-resnet20:128}")
suite=${SUITE:-target/release/suite}
python=${PYTHON:-.venv/bin/python}
steps=${STEPS:-10}
device=${DEVICE:-cpu}
[[ -x $suite ]] || { echo "no $suite: run cargo build --release -p suite" >&2; exit 2; }
"$python" -c "import torch" 2>/dev/null || { echo "no torch in $python: python -m venv .venv && .venv/bin/pip install torch torchvision" >&2; exit 2; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((r = 1; r <= rounds; r++)); do
  for c in "${cases[@]}"; do
    model=${c%%:*} batch=${c##*:}
    echo "round $r/$rounds: $model batch $batch" >&2
    "$suite" bench train --model "$model" --batch "$batch" --steps "$steps" --device "$device" --json | sed "s/^/suite $r /" >>"$out"
    "$python" bench/pytorch_reference.py train --model "$model" --batch "$batch" --steps "$steps" --device "$device" | sed "s/^/torch $r /" >>"$out"
  done
done
"$python" - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    who, rnd, obj = line.split(" ", 2)
    o = json.loads(obj)
    rows.setdefault((o["model"], o["batch"]), {}).setdefault(int(rnd), {})[who] = o
print(f"{'model':<14}{'batch':>6}{'suite img/s':>13}{'torch img/s':>13}{'ratio median':>14}{'min':>7}{'max':>7}"
      f"{'suite MiB':>11}{'torch MiB':>11}")
for (model, batch), by_round in rows.items():
    pairs = [(r["suite"], r["torch"]) for r in by_round.values() if "suite" in r and "torch" in r]
    ratios = [s["images_per_s"] / t["images_per_s"] for s, t in pairs]
    med = lambda who, key: statistics.median(p[who][key] or 0 for p in by_round.values() if who in p)
    print(f"{model:<14}{batch:>6}{med('suite', 'images_per_s'):>13.1f}{med('torch', 'images_per_s'):>13.1f}"
          f"{statistics.median(ratios):>14.2f}{min(ratios):>7.2f}{max(ratios):>7.2f}"
          f"{med('suite', 'peak_rss_mib'):>11.0f}{med('torch', 'peak_rss_mib'):>11.0f}")
PY
