"""A network run by ONNX Runtime, as a CPU deployment runs it (``measure.runtime = "onnxruntime"``).

Eager PyTorch spends about 2-10 µs of dispatch per operator on a CPU: at batch 1 a
small network's latency is mostly that overhead (a 238-parameter MNIST-1D CNN: 29 µs
in torch, 8 µs in ONNX Runtime; docs/benchmarks.md).  A model shipped under a
latency budget is usually run by a graph runtime, so the worker can measure it in
one: the network is captured by `torch.export` with a free batch dimension,
converted in memory by torch's dynamo ONNX exporter (the one `menndl export
--format onnx` uses) and loaded into an `onnxruntime.InferenceSession` on the CPU
execution provider, with the worker's thread count.  fp32 only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn


class OnnxRuntimeNetwork:
    """One network converted to ONNX and loaded into an ONNX Runtime session on the CPU."""

    def __init__(self, model: nn.Module, sample_shape: tuple[int, ...], threads: int) -> None:
        """Convert ``model`` (fp32, eval mode) for inputs of shape ``(batch, *sample_shape)``, any batch.

        Raises:
            Exception: whatever the export or the session raises for a network they cannot handle
                (the candidate fails with it: its latency is not measured another way).
        """
        import onnxruntime

        example = torch.randn((2, *sample_shape), generator=torch.Generator().manual_seed(0))  # (batch 1 specialises)
        batch = torch.export.Dim("batch", min=1)
        with torch.no_grad(), _quiet_exporter():
            program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
            converted = torch.onnx.export(program, (example,), dynamo=True, verbose=False)
        assert converted is not None  # (None only when writing to a file)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = onnxruntime.InferenceSession(
            converted.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def runner(self, x: torch.Tensor) -> Callable[[], Any]:
        """A call that runs the session on ``x`` (a CPU batch), for timing."""
        feed = {self.input_name: np.ascontiguousarray(x.detach().float().numpy())}
        run = self.session.run

        def call() -> Any:
            return run(None, feed)

        return call


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's per-call notices (missing torchvision kernels, torch's own deprecations) in the
    worker's log: one per candidate would bury it."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
