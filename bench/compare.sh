#!/usr/bin/env bash
# Interleaves `suite bench train --json` with the PyTorch reference (A, B, A, B, ...), prints the
# suite/PyTorch images/s ratios (median, min and max over the rounds) and peak memory, and keeps
# the run as data in bench/results/<date>-<cpu>[-<device>].json: every raw row, the ratios, the
# command, the CPU model and flags, and the versions. The README's performance table names the
# file it comes from. Only ratios from one run count: the machine may be shared and noisy.
#
# Usage: bench/compare.sh [ROUNDS] [MODEL:BATCH[:inference] ...]
#   bench/compare.sh 3 resnet20:128 resnet56:128 resnet110:128 resnet50:16
#   DEVICE=cuda:0 bench/compare.sh 3 resnet50:64 resnet50:256 resnet50:256:inference
# DEVICE=cuda:0 compares on a GPU (a build with `--features cuda`; PyTorch with CUDA), with peak
# device memory beside the resident peak. A case ending in `:inference` times forward passes.
# COMPARE_JSON=FILE writes the record there instead of bench/results/.
# Needs a release build (cargo build --release -p suite) and .venv with torch and torchvision
# (python -m venv .venv && .venv/bin/pip install torch torchvision).
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
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
for ((r = 1; r <= rounds; r++)); do
  for c in "${cases[@]}"; do
    IFS=: read -r model batch mode <<<"$c"
    flag=()
    [[ ${mode:-} == inference ]] && flag=(--inference)
    echo "round $r/$rounds: $model batch $batch ${mode:-train}" >&2
    "$suite" bench train --model "$model" --batch "$batch" --steps "$steps" --device "$device" "${flag[@]}" --json | sed "s/^/suite $r /" >>"$raw"
    "$python" bench/pytorch_reference.py train --model "$model" --batch "$batch" --steps "$steps" --device "$device" "${flag[@]}" | sed "s/^/torch $r /" >>"$raw"
  done
done
mkdir -p bench/results
"$python" - "$raw" "$suite" "DEVICE=$device bench/compare.sh $rounds ${cases[*]}" "$steps" "$device" <<'PY'
import datetime, json, os, platform, re, statistics, subprocess, sys
raw, suite, command, steps, device = sys.argv[1:6]
import torch
cpuinfo = open("/proc/cpuinfo").read()
field = lambda name: (re.search(rf"^{name}\s*:\s*(.*)$", cpuinfo, re.M) or [None, ""])[1]
flags = field("flags").split()
rows, by_case = [], {}
for line in open(raw):
    who, rnd, obj = line.split(" ", 2)
    o = json.loads(obj)
    rows.append({"who": who, "round": int(rnd), **o})
    by_case.setdefault((o["model"], o["batch"], o.get("mode", "train")), {}).setdefault(int(rnd), {})[who] = o
summary = []
for (model, batch, mode), by_round in by_case.items():
    pairs = [(r["suite"], r["torch"]) for r in by_round.values() if "suite" in r and "torch" in r]
    ratios = [s["images_per_s"] / t["images_per_s"] for s, t in pairs]
    def med(who, key):
        values = [r[who][key] for r in by_round.values() if who in r and r[who].get(key) is not None]
        return statistics.median(values) if values else None
    summary.append({
        "model": model, "batch": batch, "mode": mode,
        "suite_images_per_s": med("suite", "images_per_s"),
        "torch_images_per_s": med("torch", "images_per_s"),
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "suite_peak_mib": med("suite", "peak_rss_mib"), "torch_peak_mib": med("torch", "peak_rss_mib"),
        "suite_peak_device_mib": med("suite", "peak_device_mib"),
        "torch_peak_device_mib": med("torch", "peak_device_mib"),
    })
git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc)
model_name = field("model name") or platform.processor()
slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")[:40]
gpu = torch.cuda.get_device_name(torch.device(device)) if device != "cpu" else None
if gpu:
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")[:40]
record = {
    "command": command,
    "steps_per_round": int(steps),
    "device": device,
    "date": now.isoformat(timespec="seconds"),
    "machine": {
        "cpu_model": model_name,
        "cpu_family": field("cpu family"), "cpu_model_number": field("model"),
        "cores": len(re.findall(r"^processor\s*:", cpuinfo, re.M)),
        "flags": sorted(f for f in flags if re.match(r"(avx|fma|sse4|f16c|amx)", f)),
        "gpu": gpu,
    },
    "versions": {
        "suite": subprocess.run([suite, "--version"], capture_output=True, text=True).stdout.strip(),
        "git_commit": git("rev-parse", "HEAD"),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
    },
    "summary": summary,
    "rows": rows,
}
path = os.environ.get("COMPARE_JSON") or f"bench/results/{now:%Y-%m-%d}-{slug}.json"
with open(path, "w") as f:
    json.dump(record, f, indent=1)
    f.write("\n")
memory = "device MiB suite/torch" if device != "cpu" else "MiB suite/torch"
print(f"{'model':<12}{'batch':>6}{'mode':>10}{'suite img/s':>13}{'torch img/s':>13}{'ratio':>7}{'min':>6}{'max':>6}  {memory}")
for s in summary:
    suite_mib, torch_mib = (s["suite_peak_device_mib"], s["torch_peak_device_mib"]) if device != "cpu" else (s["suite_peak_mib"], s["torch_peak_mib"])
    mib = lambda v: "-" if v is None else f"{v:.0f}"
    print(f"{s['model']:<12}{s['batch']:>6}{s['mode']:>10}{s['suite_images_per_s']:>13.1f}{s['torch_images_per_s']:>13.1f}"
          f"{s['ratio_median']:>7.2f}{s['ratio_min']:>6.2f}{s['ratio_max']:>6.2f}  {mib(suite_mib)} / {mib(torch_mib)}")
print(f"wrote {path}", file=sys.stderr)
PY
