"""What a worker measures around a candidate: peak memory, clocks that wait for the device, weights."""

from __future__ import annotations

import gc
import time

import numpy as np
import psutil
import torch
from torch import nn


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement for the next candidate."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of the candidate: ``max_memory_allocated`` on a GPU, the process RSS on the CPU.

    The CPU figure is the resident set of the whole worker process now (its
    data included), the closest cheap measure psutil offers.
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(psutil.Process().memory_info().rss)


def now(device: torch.device) -> float:
    """``time.perf_counter()`` after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def release_memory(device: torch.device) -> None:
    """Give memory held by a finished or failed candidate back (after its references are gone)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def weights_as_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state_dict as plain float32, C-contiguous numpy arrays on the CPU (no pickle needed)."""
    return {
        name: tensor.detach().to("cpu", torch.float32).contiguous().numpy()
        for name, tensor in model.state_dict().items()
    }
