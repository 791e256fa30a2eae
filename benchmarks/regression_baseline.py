"""Regression baseline: a small hand-written 1-D CNN on the built-in damped-oscillator dataset.

Trains `baseline_cnn` on the training set of `menndl.data.oscillator.make_oscillator1d` and
reports, on its test set, the coefficient of determination R² (scikit-learn's ``r2_score``:
``1 - SSE / SST`` per target, averaged uniformly over the targets), the R² of each target and the
mean squared error in the targets' original units.  It is the reference a searched architecture
should beat on this dataset.

Inputs are standardised per channel and targets per target with training-set statistics; the
predictions are un-standardised before any metric is computed.  Training uses Adam on the MSE
loss with a cosine learning-rate schedule (per step, to zero); the test set is never seen in
training.

    python benchmarks/regression_baseline.py                          # 20 epochs, batch 64, lr 3e-3
    python benchmarks/regression_baseline.py --epochs 20 --batch-size 64 --lr 3e-3 --seed 0 --threads 1 --json

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

from menndl.data.oscillator import TARGETS, make_oscillator1d


def baseline_cnn(length: int, targets: int) -> nn.Module:
    """The baseline: three convolution blocks and a linear head (4,403 parameters for 3 targets).

    Layers, for input ``(N, 1, length)``:

    1. ``Conv1d(1, 16, 7, padding=3)``, ReLU, ``MaxPool1d(2)``  -> ``(N, 16, length // 2)``   (128 parameters)
    2. ``Conv1d(16, 24, 5, padding=2)``, ReLU, ``MaxPool1d(2)`` -> ``(N, 24, length // 4)``   (1,944)
    3. ``Conv1d(24, 24, 3, padding=1)``, ReLU, ``MaxPool1d(2)`` -> ``(N, 24, length // 8)``   (1,752)
    4. ``AdaptiveAvgPool1d(8)``, flatten                      -> ``(N, 192)``
    5. ``Linear(192, targets)``                                                        (579 for 3 targets)

    The adaptive pool fixes the head's size whatever the length, so the parameter count does not
    grow with it; at length 64 it keeps all 8 positions, so the head sees where in the window
    things happen (which the damping and the amplitude at onset need), not only what happens.

    Args:
        length: Number of readings per sample, at least 8.
        targets: Number of regression targets, at least 1.

    Returns:
        The untrained model, mapping ``(N, 1, length)`` float32 to ``(N, targets)``.

    Raises:
        ValueError: If ``length`` or ``targets`` is too small.
    """
    if length < 8:
        raise ValueError(f"length must be at least 8, got {length}")
    if targets < 1:
        raise ValueError(f"targets must be at least 1, got {targets}")
    return nn.Sequential(
        nn.Conv1d(1, 16, 7, padding=3),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(16, 24, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(24, 24, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.AdaptiveAvgPool1d(8),
        nn.Flatten(),
        nn.Linear(24 * 8, targets),
    )


def r2_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-target coefficient of determination ``1 - SSE / SST`` (SST about the true mean).

    Args:
        y_true: True targets, ``(N, T)``.
        y_pred: Predictions, ``(N, T)``.

    Returns:
        float64 array of ``T`` scores (1 is perfect, 0 is predicting the mean).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    sse = ((y_true - y_pred) ** 2).sum(axis=0)
    sst = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - sse / sst


def train_baseline(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    threads: int = 1,
) -> dict[str, float]:
    """Train `baseline_cnn` on ``(x, y)`` and evaluate it on ``(x_test, y_test)``.

    Args:
        x: Training inputs, ``(N, C, length)`` (C = 1 for `baseline_cnn`).
        y: Training targets, ``(N,)`` or ``(N, T)``, in their original units.
        x_test: Test inputs, ``(M, C, length)``.
        y_test: Test targets, ``(M,)`` or ``(M, T)``.
        epochs: Passes over the training set.
        batch_size: Samples per step (the last batch of an epoch may be smaller).
        lr: Peak learning rate of Adam, annealed to zero by a per-step cosine schedule.
        seed: Seed of the initialisation and of the shuffling.
        threads: torch CPU threads (``torch.set_num_threads``).

    Returns:
        ``params`` (trainable parameters), ``r2`` (test R², uniform average over targets),
        ``mse`` (test MSE in original units, averaged over targets), ``seconds`` (training and
        evaluation wall time), and ``r2_<i>`` for each target column ``i``.

    Raises:
        ValueError: If the inputs are not ``(N, 1, length)`` or the targets do not match them.
    """
    if x.ndim != 3 or x.shape[1] != 1 or x_test.shape[1:] != x.shape[1:]:
        raise ValueError(f"x and x_test must be (N, 1, length) alike, got {x.shape} and {x_test.shape}")
    if len(y) != len(x) or len(y_test) != len(x_test):
        raise ValueError(
            f"y and y_test must have one row per sample, got {len(y)} for {len(x)}, {len(y_test)} for {len(x_test)}"
        )
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    y2 = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
    y2_test = np.asarray(y_test, dtype=np.float32).reshape(len(y_test), -1)
    x_mean = x.mean(axis=(0, 2), keepdims=True, dtype=np.float64)
    x_std = x.std(axis=(0, 2), keepdims=True, dtype=np.float64)
    x_std[x_std == 0] = 1.0  # a constant channel: centred, not scaled
    y_mean = y2.mean(axis=0, dtype=np.float64)
    y_std = y2.std(axis=0, dtype=np.float64)
    y_std[y_std == 0] = 1.0
    xt = torch.from_numpy(((x - x_mean) / x_std).astype(np.float32))
    yt = torch.from_numpy(((y2 - y_mean) / y_std).astype(np.float32))
    xt_test = torch.from_numpy(((x_test - x_mean) / x_std).astype(np.float32))

    start = time.perf_counter()
    model = baseline_cnn(x.shape[-1], y2.shape[1])
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(xt) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    loss_fn = nn.MSELoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for begin in range(0, len(xt), batch_size):
            batch = order[begin : begin + batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(xt_test[i : i + 1024]) for i in range(0, len(xt_test), 1024)]).numpy()
    seconds = time.perf_counter() - start

    predicted = predicted.astype(np.float64) * y_std + y_mean
    per_target = r2_scores(y2_test, predicted)
    result = {
        "params": float(params),
        "r2": float(per_target.mean()),
        "mse": float(((y2_test - predicted) ** 2).mean()),
        "seconds": seconds,
    }
    result.update({f"r2_{i}": float(score) for i, score in enumerate(per_target)})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of the training")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    begin = time.perf_counter()
    x, y, x_test, y_test = make_oscillator1d(seed=args.seed)
    generation = time.perf_counter() - begin
    result = train_baseline(
        x,
        y,
        x_test,
        y_test,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
    )
    if args.json:
        print(json.dumps({**result, "epochs": args.epochs, "generation_seconds": generation}))
        return 0
    print(f"data       oscillator1d seed {args.seed}: {len(x)} train, {len(x_test)} test ({generation:.3f} s)")
    print(f"parameters {int(result['params'])}")
    print(f"test R²    {result['r2']:.4f} (uniform average over {y.shape[1]} targets, {args.epochs} epochs)")
    for i, name in enumerate(TARGETS):
        print(f"  {name:<9} R² {result[f'r2_{i}']:.4f}")
    print(f"test MSE   {result['mse']:.5g} (original units, averaged over targets)")
    print(f"time       {result['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
