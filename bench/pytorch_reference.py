#!/usr/bin/env python3
"""PyTorch (CPU) figures for the same measurements as `suite bench`, as the speed reference.

The nets are built like the suite's: the CIFAR ResNets of §4.2 (3x3 stem with 16 filters, three
stages of 2n basic blocks, option-A shortcuts: strided subsampling plus zero channels) and
torchvision's ImageNet ResNets. Output is one JSON object per measurement, with the same keys as
`suite bench train --json` / `suite bench op --json` (training reports the process's peak
resident memory too).

PyTorch is a reference here, never a dependency of the suite:

    python -m venv .venv && .venv/bin/pip install torch torchvision
    .venv/bin/python bench/pytorch_reference.py train --model resnet20 --batch 128
    .venv/bin/python bench/pytorch_reference.py train --model resnet50 --batch 256 --device cuda --inference
    .venv/bin/python bench/pytorch_reference.py op --batch 128 --channels 16 --size 32
"""

import argparse
import json
import os
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, residual):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.residual = residual
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.extra:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
            y = y + shortcut
        return F.relu(y)


class CifarNet(nn.Module):
    """Depth 6n+2, plain or residual with option-A shortcuts."""

    def __init__(self, depth, residual=True, classes=10):
        super().__init__()
        assert (depth - 2) % 6 == 0, "CIFAR depths are 6n+2"
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, c_in = [], 16
        for stage, width in enumerate([16, 32, 64]):
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(BasicBlock(c_in, width, stride, residual))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Bottleneck(nn.Module):
    """torchvision's bottleneck (stride on the 3x3), for machines without torchvision."""

    def __init__(self, c_in, width, stride):
        super().__init__()
        c_out = 4 * width
        self.convs = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.convs(x) + (x if self.shortcut is None else self.shortcut(x)))


def bottleneck_resnet(blocks):
    """ResNet-50/101/152 as torchvision builds them (same layers, same FLOPs)."""
    layers, c_in = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                    nn.MaxPool2d(3, 2, 1)], 64
    for stage, (width, n) in enumerate(zip([64, 128, 256, 512], blocks)):
        for b in range(n):
            layers.append(Bottleneck(c_in, width, 2 if stage > 0 and b == 0 else 1))
            c_in = 4 * width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1000))


def build(name):
    """The suite's model names: resnetN / plainN (CIFAR when N = 6n+2 < 152, else torchvision)."""
    residual = name.startswith("resnet")
    depth = int(name.removeprefix("resnet").removeprefix("plain").split("-")[0])
    if depth in (18, 34, 50, 101, 152):
        assert residual, "plain ImageNet nets are not in torchvision"
        try:
            import torchvision
        except ImportError:
            blocks = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
            assert depth in blocks, f"resnet{depth} needs torchvision"
            return bottleneck_resnet(blocks[depth]), 224, 1000
        return getattr(torchvision.models, f"resnet{depth}")(), 224, 1000
    return CifarNet(depth, residual), 32, 10


def train(args):
    device = torch.device(args.device)
    if device.type == "cuda":
        # cuDNN's timed search for the fastest conv algorithms per shape, as the suite's default.
        torch.backends.cudnn.benchmark = True
    model, side, classes = build(args.model)
    model.to(device).train(not args.inference)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(args.batch, 3, side, side, device=device)
    labels = torch.arange(args.batch, device=device) % classes

    def step():
        if args.inference:
            with torch.no_grad():
                model(images)
        else:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            # Time the queued kernels, not their launch (the suite waits for the GPU the same way).
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        rates.append(args.batch / (time.perf_counter() - start))
    report = {
        "model": args.model, "batch": args.batch, "device": args.device, "kernels": "pytorch",
        "threads": torch.get_num_threads(), "images_per_s": statistics.median(rates),
        "images_per_s_min": min(rates), "images_per_s_max": max(rates), "steps": len(rates),
        "torch": torch.__version__,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.inference:
        report["mode"] = "inference"
    if device.type == "cuda":
        report["peak_device_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(report))


def median_seconds(repeats, f):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def op(args):
    n, c, s, k, st = args.batch, args.channels, args.size, args.kernel, args.stride
    x = torch.randn(n, c, s, s)
    w = torch.randn(c, c, k, k) * 0.1
    pad = k // 2
    out = (s + 2 * pad - k) // st + 1
    flops = 2 * n * c * out * out * c * k * k
    rows = []
    with torch.no_grad():
        fwd = median_seconds(args.repeats, lambda: F.conv2d(x, w, None, st, pad))
    rows.append(("conv forward", fwd, flops))
    xg = x.clone().requires_grad_()
    both = median_seconds(args.repeats, lambda: F.conv2d(xg, w, None, st, pad).sum().backward())
    rows.append(("conv input gradient", both - fwd, flops))
    wg = w.clone().requires_grad_()
    both = median_seconds(args.repeats, lambda: F.conv2d(x, wg, None, st, pad).sum().backward())
    rows.append(("conv weight gradient", both - fwd, flops))
    bn = nn.BatchNorm2d(c).train()
    rows.append(("batch norm forward+backward", median_seconds(args.repeats, lambda: bn(xg).sum().backward()), None))
    rows.append(("relu forward+backward", median_seconds(args.repeats, lambda: F.relu(xg).sum().backward()), None))
    rows.append(("max pool 3x3/2 forward+backward",
                 median_seconds(args.repeats, lambda: F.max_pool2d(xg, 3, 2, 1).sum().backward()), None))
    # With autograd on, as in training: the forward also records the indices of the maxima.
    rows.append(("max pool 3x3/2 forward", median_seconds(args.repeats, lambda: F.max_pool2d(xg, 3, 2, 1)), None))
    a = torch.randn(1024, 1024)
    rows.append(("sgemm 1024 (reference)", median_seconds(args.repeats, lambda: a @ a), 2 * 1024**3))
    print(json.dumps({
        "batch": n, "channels": c, "size": s, "kernel": k, "stride": st, "kernels": "pytorch",
        "threads": torch.get_num_threads(),
        "ops": [{"op": name, "ms": t * 1e3, "gflop_per_s": f / t / 1e9 if f else None} for name, t, f in rows],
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("train")
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N], as torch.device names them")
    p.add_argument("--inference", action="store_true", help="time forward passes in eval mode under no_grad")
    p = sub.add_parser("op")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"train": train, "op": op}[args.what](args)


if __name__ == "__main__":
    main()
