"""Device, precision, memory format and optimizer choices for training a candidate."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from menndl.worker.devices import gpu_index


def choose_device(requested: str, local_rank: int) -> torch.device:
    """The device for a worker: the GPU its node-local rank maps to, else the CPU.

    GPUs are counted after ``CUDA_VISIBLE_DEVICES`` (torch honours it), so a
    rank bound to one GPU by its launcher takes ``cuda:0``.

    Raises:
        RuntimeError: ``requested`` is ``cuda`` and no CUDA device is visible.
    """
    available = torch.cuda.is_available()
    if requested == "cpu" or (requested == "auto" and not available):
        return torch.device("cpu")
    index = gpu_index(local_rank, torch.cuda.device_count() if available else 0)
    if index is None:
        raise RuntimeError("training.device is 'cuda' but this worker sees no CUDA device")
    torch.cuda.set_device(index)  # so that nothing (bf16 query, pinned memory) opens a context on GPU 0
    return torch.device("cuda", index)


def choose_precision(requested: str, device: torch.device) -> str:
    """Resolve ``auto``: bf16 on GPUs that support it, fp16 (with a gradient scaler) on older GPUs, fp32 on CPUs.

    CPUs get fp32 by default: bf16 autocast only pays on CPUs with native bf16
    instructions, and costs accuracy; set ``precision = "bf16"`` where it pays.
    """
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_context(device: torch.device, precision: str) -> Any:
    """A context manager for the forward pass: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def use_channels_last(requested: str, device: torch.device, precision: str, input_rank: int) -> bool:
    """Whether to train in ``channels_last``: ``auto`` means 2-D convolutions on a GPU in bf16/fp16.

    There tensor cores want NHWC; on CPUs and in fp32 it rarely pays.
    """
    if input_rank != 4:  # (N, C, H, W) only: channels_last is defined for 4-D tensors
        return False
    if requested == "on":
        return True
    if requested == "off":
        return False
    return device.type == "cuda" and precision in ("bf16", "fp16")


def make_optimizer(
    model: nn.Module, name: str, learning_rate: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """The optimizer a genome asks for (SGD with Nesterov momentum when momentum > 0)."""
    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=learning_rate, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'")
