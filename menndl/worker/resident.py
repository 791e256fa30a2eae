"""The dataset, loaded once per worker and kept resident as standardised tensors.

On a GPU the tensors live on the device when they fit in half of its free
memory, and batches are drawn by indexing them there; otherwise they stay in
pinned host memory and each batch is copied asynchronously.  There is no
DataLoader and no loader process on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from menndl.data import Dataset

DEVICE_MEMORY_SHARE = 0.5  # the data may take at most this share of the GPU's free memory


@dataclass
class DeviceData:
    """A split to train on and a held-out split, standardised per channel with the training split's statistics.

    For the search they are the training and validation splits; for ``menndl train`` (``retrain``) the training
    and validation splits together, and the test split.

    Attributes:
        x_train: Samples to train on.
        y_train: Their labels.
        x_val: Held-out samples (the validation split, or the test split when retraining; it may then be empty).
        y_val: Their labels.
        device: The training device (the tensors may be in host memory instead, see `index_device`).
        mean: The per-channel mean subtracted from every sample, shaped to broadcast (``(1, C, 1, ...)``, CPU).
        std: The per-channel standard deviation every sample was divided by (at least 1e-6), shaped alike.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_dataset(cls, data: Dataset, device: torch.device, *, retrain: bool = False) -> DeviceData:
        """Standardise and place the splits: on ``device`` when they fit, else in (pinned) host memory.

        Args:
            data: The dataset.
            device: The training device.
            retrain: Train on the training and validation splits together and hold out the test split
                (``menndl train``), instead of training on the training split and holding out the validation one.

        Returns:
            The resident splits.
        """
        if retrain:
            fit_x, fit_y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
            held_x, held_y = data.x_test, data.y_test
        else:
            fit_x, fit_y, held_x, held_y = data.x_train, data.y_train, data.x_val, data.y_val
        x_train = torch.from_numpy(fit_x)
        axes = [0, *range(2, x_train.dim())]
        mean = x_train.mean(dim=axes, keepdim=True)
        std = x_train.std(dim=axes, keepdim=True).clamp_min(1e-6)
        nbytes = sum(a.nbytes for a in (fit_x, fit_y, held_x, held_y))
        home = device if fits_on(device, nbytes) else torch.device("cpu")
        pin = device.type == "cuda" and home.type == "cpu"

        def place(tensor: torch.Tensor) -> torch.Tensor:
            tensor = tensor.contiguous()
            return tensor.pin_memory() if pin else tensor.to(home)

        def standardise(x: Any) -> torch.Tensor:
            return place((torch.from_numpy(x) - mean) / std)

        return cls(
            x_train=standardise(fit_x),
            y_train=place(torch.from_numpy(fit_y)),
            x_val=standardise(held_x),
            y_val=place(torch.from_numpy(held_y)),
            device=device,
            mean=mean,
            std=std,
        )

    @property
    def index_device(self) -> torch.device:
        """Where the batch indices are drawn: where the data lives."""
        return self.x_train.device

    def batch(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``index`` of ``x``/``y``, on the training device."""
        xb, yb = x[index], y[index]
        if xb.device != self.device:
            xb = xb.pin_memory().to(self.device, non_blocking=True)
            yb = yb.pin_memory().to(self.device, non_blocking=True)
        return xb, yb

    def rows(self, x: torch.Tensor, y: torch.Tensor, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``first:last`` of ``x``/``y``, on the training device."""
        xb, yb = x[first:last], y[first:last]
        if xb.device != self.device:
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
        return xb, yb


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` of data fit in the device's share for resident data (always on the CPU)."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_SHARE * free
