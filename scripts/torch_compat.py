#!/usr/bin/env python3
"""Checks that weights cross between this suite and torchvision in both directions.

1. torchvision -> suite: a torchvision model's state dict, saved as safetensors, loads with
   `suite predict`, and the logits it prints equal PyTorch's for the same input tensor.
2. suite -> torchvision: weights written by `suite init` load into the torchvision model with
   `strict=True`, and PyTorch's logits equal `suite predict`'s.

PyTorch is a reference here, never a dependency of the suite. Usage (from the repository root):

    python -m venv .venv && .venv/bin/pip install torch torchvision safetensors
    cargo build --release -p suite
    .venv/bin/python scripts/torch_compat.py [--suite target/release/suite]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file, save_file

# (suite name, torchvision constructor): torchvision's bottleneck nets are "v1.5".
PAIRS = [
    ("resnet18", torchvision.models.resnet18),
    ("resnet34", torchvision.models.resnet34),
    ("resnet50-v1.5", torchvision.models.resnet50),
]


def suite_logits(suite, model, weights, tensor):
    out = subprocess.run(
        [suite, "predict", "--model", model, "--weights", str(weights), "--tensor", str(tensor), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return torch.tensor(json.loads(out)["logits"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="target/release/suite")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max |logit difference|")
    args = parser.parse_args()
    torch.manual_seed(0)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x = torch.randn(2, 3, 224, 224)
        save_file({"input": x.contiguous()}, tmp / "x.safetensors")
        for name, ctor in PAIRS:
            # torchvision -> suite. Train-mode passes first, so the BN running statistics differ from
            # their initial values and the check covers them.
            tv = ctor()
            tv.train()
            with torch.no_grad():
                for _ in range(2):
                    tv(torch.randn(4, 3, 224, 224))
            tv.eval()
            state = {k: v.contiguous() for k, v in tv.state_dict().items()}
            save_file(state, tmp / "tv.safetensors")
            with torch.no_grad():
                expected = tv(x)
            got = suite_logits(args.suite, name, tmp / "tv.safetensors", tmp / "x.safetensors")
            d1 = (got - expected).abs().max().item()

            # suite -> torchvision.
            subprocess.run([args.suite, "init", "--model", name, "--seed", "3", "--out", str(tmp / "ours.safetensors")],
                           check=True, capture_output=True)
            tv2 = ctor()
            tv2.load_state_dict(load_file(tmp / "ours.safetensors"), strict=True)
            tv2.eval()
            with torch.no_grad():
                expected2 = tv2(x)
            got2 = suite_logits(args.suite, name, tmp / "ours.safetensors", tmp / "x.safetensors")
            d2 = (got2 - expected2).abs().max().item()
            scale = expected.abs().max().item()
            ok = d1 <= args.tolerance and d2 <= args.tolerance
            failures += not ok
            print(f"{name:<14} torchvision->suite max|diff| {d1:.2e} (logits up to {scale:.2f}); "
                  f"suite->torchvision max|diff| {d2:.2e}  {'ok' if ok else 'FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
