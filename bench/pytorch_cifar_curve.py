#!/usr/bin/env python3
"""PyTorch (CPU) training curve of a CIFAR net under the paper's protocol, as a numerics reference.

Trains the same architecture as the suite (`pytorch_reference.CifarNet`: 3x3 stem, three stages,
option-A shortcuts, Kaiming fan-out init) on the same CIFAR-10 parquet files with the paper's
recipe (§4.2): per-pixel mean subtraction, 4-pixel zero padding, random 32x32 crop and horizontal
flip, batch 128, SGD with momentum 0.9 and weight decay 1e-4, learning rate 0.1 divided by 10 at
each of --milestones (the paper's 32000,48000; the quick profile's 200,300), 0.01 for the first 400
iterations with --warmup, as the paper does for 110 and 1202 layers. It prints one JSON line per
logging interval: the mean training loss and error over the interval, as the suite's curves.parquet
records them, and the test error at the end (unless --no-test).

Used to tell whether an early-training curve of the suite (e.g. ResNet-56 learning more slowly than
ResNet-20 in the first epoch) is the protocol's own dynamics or a defect:

    .venv/bin/pip install torch polars pillow numpy
    .venv/bin/python bench/pytorch_cifar_curve.py --model resnet56 --iterations 400 \
        --milestones 200,300 --data ../shared/data/cifar10
"""

import argparse
import io
import json
import time

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from PIL import Image

from pytorch_reference import CifarNet


def load_split(path):
    """Images as uint8 [N, 32, 32, 3] and labels, from a parquet file in the Hugging Face schema."""
    frame = pl.read_parquet(path)
    images = np.stack(
        [np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")) for cell in frame["img"]]
    )
    return images, frame["label"].to_numpy().astype(np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet56", help="resnetN or plainN, N = 6n+2")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--milestones", default="32000,48000",
                        help="iterations after which the learning rate is divided by 10")
    parser.add_argument("--warmup", action="store_true", help="lr 0.01 for the first 400 iterations")
    parser.add_argument("--no-test", action="store_true", help="skip the final test-set evaluation")
    parser.add_argument("--data", required=True, help="folder with train.parquet and test.parquet")
    args = parser.parse_args()

    milestones = [int(m) for m in args.milestones.split(",") if m]
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_x, train_y = load_split(f"{args.data}/train.parquet")
    mean = train_x.astype(np.float32).mean(axis=0) / 255.0
    train = torch.from_numpy((train_x.astype(np.float32) / 255.0 - mean).transpose(0, 3, 1, 2))
    # Padding after mean subtraction pads with the mean, as the suite does.
    train = F.pad(train, (4, 4, 4, 4))
    labels = torch.from_numpy(train_y)

    depth = int(args.model.removeprefix("resnet").removeprefix("plain"))
    model = CifarNet(depth, residual=args.model.startswith("resnet"))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    order, cursor = rng.permutation(len(train)), 0
    loss_sum, wrong, seen, start = 0.0, 0, 0, time.perf_counter()
    for it in range(1, args.iterations + 1):
        if cursor + args.batch > len(order):
            order, cursor = rng.permutation(len(train)), 0
        idx = order[cursor : cursor + args.batch]
        cursor += args.batch
        dy, dx = rng.integers(0, 9, size=2 * len(idx)).reshape(2, -1)
        flips = rng.random(len(idx)) < 0.5
        crops = [train[i, :, y : y + 32, x : x + 32] for i, y, x in zip(idx, dy, dx)]
        batch = torch.stack([c.flip(-1) if f else c for c, f in zip(crops, flips)])
        target = labels[idx]

        # Iteration `it` (1-based) trains after it - 1 updates: the drop at m applies from m + 1.
        lr = 0.1 * 0.1 ** sum(it > m for m in milestones)
        if args.warmup and it <= 400:
            lr = 0.01
        for group in opt.param_groups:
            group["lr"] = lr
        logits = model(batch)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

        loss_sum += loss.item() * len(idx)
        wrong += (logits.argmax(1) != target).sum().item()
        seen += len(idx)
        if it % args.log_every == 0:
            print(json.dumps({
                "model": args.model, "iteration": it, "lr": lr, "train_loss": loss_sum / seen,
                "train_error": 100.0 * wrong / seen, "seconds": time.perf_counter() - start,
            }), flush=True)
            loss_sum, wrong, seen = 0.0, 0, 0

    if not args.no_test:
        test_x, test_y = load_split(f"{args.data}/test.parquet")
        test = torch.from_numpy((test_x.astype(np.float32) / 255.0 - mean).transpose(0, 3, 1, 2))
        model.eval()
        wrong = 0
        with torch.no_grad():
            for i in range(0, len(test), 500):
                logits = model(test[i : i + 500])
                wrong += (logits.argmax(1) != torch.from_numpy(test_y[i : i + 500])).sum().item()
        print(json.dumps({
            "model": args.model, "iteration": args.iterations,
            "test_error": 100.0 * wrong / len(test), "torch": torch.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
