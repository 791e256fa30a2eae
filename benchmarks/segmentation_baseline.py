"""Segmentation baseline: a small hand-written 2-D U-Net on the built-in shapes dataset.

Trains `baseline_unet` on the training set of `menndl.data.shapes.make_shapes2d` and reports, on its test
set, the mean intersection over union (mIoU: ``TP / (TP + FP + FN)`` per class from the confusion matrix of
all test pixels, averaged over the classes that occur in the masks or the predictions), the pixel accuracy
and the IoU of each class.  The metrics are computed here with numpy, independently of menndl's
``menndl/worker/targets.py``.  It is the reference a searched architecture should beat on this dataset.

Inputs are standardised per channel with training-set statistics.  Training uses Adam on the per-pixel
cross entropy with a cosine learning-rate schedule (per step, to zero); the test set is never seen in
training.

    python benchmarks/segmentation_baseline.py                          # 20 epochs, batch 64, lr 3e-3
    python benchmarks/segmentation_baseline.py --epochs 20 --batch-size 64 --lr 3e-3 --seed 0 --threads 2 --json

Another script can train the same model on other arrays with `train_baseline`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
from torch import nn

from menndl.data.shapes import CLASSES, make_shapes2d


def _block(inputs: int, outputs: int) -> nn.Sequential:
    """Two ``Conv2d(3x3, padding=1, no bias)``-``BatchNorm2d``-ReLU, ``inputs`` -> ``outputs`` channels."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(),
    )


class _UNet(nn.Module):
    """See `baseline_unet`."""

    def __init__(self, channels: int, classes: int, width: int) -> None:
        super().__init__()
        w = width
        self.down1 = _block(channels, w)
        self.down2 = _block(w, 2 * w)
        self.bottleneck = _block(2 * w, 4 * w)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.decode2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.decode1 = _block(2 * w, w)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.down1(x)
        skip2 = self.down2(self.pool(skip1))
        middle = self.bottleneck(self.pool(skip2))
        up2 = self.decode2(torch.cat([self.up2(middle), skip2], dim=1))
        up1 = self.decode1(torch.cat([self.up1(up2), skip1], dim=1))
        return self.head(up1)


def baseline_unet(channels: int, classes: int, width: int = 8) -> nn.Module:
    """The baseline: a two-level U-Net (29,508 parameters for 1 channel, 4 classes and width 8).

    Layers, for input ``(N, channels, H, W)`` with H and W multiples of 4, ``w`` = ``width``; "block(a, b)" is
    ``Conv2d(a, b, 3, padding=1, bias=False)``, ``BatchNorm2d(b)``, ReLU, ``Conv2d(b, b, 3, padding=1,
    bias=False)``, ``BatchNorm2d(b)``, ReLU (``9 a b + 9 b b + 4 b`` parameters).  Parameters at the default
    width 8, 1 channel and 4 classes:

    1. encoder 1: block(channels, w)                                -> ``(N, w, H, W)``          (680)
    2. ``MaxPool2d(2)``, encoder 2: block(w, 2w)                    -> ``(N, 2w, H/2, W/2)``     (3,520)
    3. ``MaxPool2d(2)``, bottleneck: block(2w, 4w)                  -> ``(N, 4w, H/4, W/4)``     (13,952)
    4. ``ConvTranspose2d(4w, 2w, 2, stride=2)``                     -> ``(N, 2w, H/2, W/2)``     (2,064)
    5. concatenate encoder 2, decoder 2: block(4w, 2w)              -> ``(N, 2w, H/2, W/2)``     (6,976)
    6. ``ConvTranspose2d(2w, w, 2, stride=2)``                      -> ``(N, w, H, W)``          (520)
    7. concatenate encoder 1, decoder 1: block(2w, w)               -> ``(N, w, H, W)``          (1,760)
    8. ``Conv2d(w, classes, 1)``: the per-pixel logits              -> ``(N, classes, H, W)``    (36)

    Total 29,508; the count grows about as ``w ** 2`` (7,492 at width 4, 117,124 at width 16).

    Args:
        channels: Input channels, at least 1.
        classes: Number of classes, at least 2.
        width: Channels of the first level (doubled at each level down), at least 1.

    Returns:
        The untrained model, mapping ``(N, channels, H, W)`` float32 to logits ``(N, classes, H, W)``.

    Raises:
        ValueError: If an argument is too small.
    """
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if classes < 2:
        raise ValueError(f"classes must be at least 2, got {classes}")
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    return _UNet(channels, classes, width)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """The ``(classes, classes)`` int64 confusion matrix of all pixels, rows true class, columns predicted.

    Args:
        y_true: True classes, any shape, integers in ``0 .. classes - 1``.
        y_pred: Predicted classes, the same shape.
        classes: Number of classes.

    Returns:
        ``counts[i, j]``: the pixels of class ``i`` predicted as ``j``.
    """
    cells = np.asarray(y_true, dtype=np.int64).ravel() * classes + np.asarray(y_pred, dtype=np.int64).ravel()
    return np.bincount(cells, minlength=classes * classes).reshape(classes, classes)


def iou_scores(counts: np.ndarray) -> np.ndarray:
    """Per-class ``IoU = TP / (TP + FP + FN)`` of a confusion matrix (NaN for a class absent from both).

    Args:
        counts: Confusion matrix, rows true class, columns predicted.

    Returns:
        float64 array of one IoU per class.
    """
    counts = np.asarray(counts, dtype=np.float64)
    hits = np.diag(counts)
    union = counts.sum(axis=0) + counts.sum(axis=1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / union, np.nan)


def train_baseline(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    classes: int | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    threads: int = 1,
    width: int = 8,
) -> dict[str, float]:
    """Train `baseline_unet` on ``(x, y)`` and evaluate it on ``(x_test, y_test)``.

    Args:
        x: Training images, ``(N, C, H, W)`` with H and W multiples of 4.
        y: Training masks, ``(N, H, W)`` integers in ``0 .. classes - 1``.
        x_test: Test images, ``(M, C, H, W)``.
        y_test: Test masks, ``(M, H, W)``.
        classes: Number of classes (None: one more than the largest label of ``y`` and ``y_test``).
        epochs: Passes over the training set.
        batch_size: Images per step (the last batch of an epoch may be smaller; a last batch of one image is
            dropped, as batch norm needs two).
        lr: Peak learning rate of Adam, annealed to zero by a per-step cosine schedule.
        seed: Seed of the initialisation and of the shuffling.
        threads: torch CPU threads (``torch.set_num_threads``).
        width: Channels of the U-Net's first level.

    Returns:
        ``params`` (trainable parameters), ``miou`` (test mIoU over the classes present in the test masks or
        predictions), ``pixel_accuracy`` (share of test pixels classified right), ``seconds`` (training and
        evaluation wall time), and ``iou_<k>`` for each class ``k`` (NaN when absent from both).

    Raises:
        ValueError: If the images are not ``(N, C, H, W)`` alike with H and W multiples of 4, or the masks do
            not match them.
    """
    if x.ndim != 4 or x_test.shape[1:] != x.shape[1:] or x.shape[2] % 4 or x.shape[3] % 4:
        raise ValueError(f"x and x_test must be (N, C, H, W) alike, H and W multiples of 4, got {x.shape} and "
                         f"{x_test.shape}")  # fmt: skip
    if y.shape != (x.shape[0], *x.shape[2:]) or y_test.shape != (x_test.shape[0], *x_test.shape[2:]):
        raise ValueError(f"y and y_test must be (N, H, W) masks of x and x_test, got {y.shape} and {y_test.shape}")
    if classes is None:
        classes = int(max(y.max(), y_test.max())) + 1
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_mean = x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    x_std = x.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    x_std[x_std == 0] = 1.0  # a constant channel: centred, not scaled
    xt = torch.from_numpy(((x - x_mean) / x_std).astype(np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    xt_test = torch.from_numpy(((x_test - x_mean) / x_std).astype(np.float32))

    start = time.perf_counter()
    model = baseline_unet(x.shape[1], classes, width)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(xt) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for begin in range(0, len(xt), batch_size):
            batch = order[begin : begin + batch_size]
            if len(batch) > 1:  # batch norm needs two samples
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[batch]), yt[batch])
                loss.backward()
                optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(xt_test[i : i + 256]).argmax(dim=1) for i in range(0, len(xt_test), 256)])
    seconds = time.perf_counter() - start

    counts = confusion(y_test, predicted.numpy(), classes)
    per_class = iou_scores(counts)
    result = {
        "params": float(params),
        "miou": float(np.nanmean(per_class)),
        "pixel_accuracy": float(np.trace(counts) / counts.sum()),
        "seconds": seconds,
    }
    result.update({f"iou_{k}": float(score) for k, score in enumerate(per_class)})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of the training")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--width", type=int, default=8, help="channels of the U-Net's first level")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    begin = time.perf_counter()
    x, y, x_test, y_test = make_shapes2d(seed=args.seed)
    generation = time.perf_counter() - begin
    result = train_baseline(
        x,
        y,
        x_test,
        y_test,
        classes=len(CLASSES),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        width=args.width,
    )
    if args.json:
        print(json.dumps({**result, "epochs": args.epochs, "width": args.width, "generation_seconds": generation}))
        return 0
    size = f"{x.shape[-2]}x{x.shape[-1]}"
    print(f"data       shapes2d seed {args.seed}: {len(x)} train, {len(x_test)} test, {size} ({generation:.3f} s)")
    print(f"parameters {int(result['params'])} (width {args.width})")
    print(f"test mIoU  {result['miou']:.4f} (mean over {len(CLASSES)} classes, {args.epochs} epochs)")
    for k, name in enumerate(CLASSES):
        print(f"  {name:<10} IoU {result[f'iou_{k}']:.4f}")
    print(f"pixel acc  {result['pixel_accuracy']:.4f}")
    print(f"time       {result['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
