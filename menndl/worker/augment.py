"""Random changes to training batches on the training device: flips, padded crops, Gaussian noise.

`Augmenter` works on a whole batch ``(N, C, *spatial)`` at once with per-sample random choices and no
Python loop over samples.  Its random numbers come from torch's global generator of the batch's device, so
a run seeded with ``torch.manual_seed`` repeats.  Validation and test batches are never augmented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from menndl.data.augment_check import check_augment
from menndl.job import AugmentConfig


class Augmenter:
    """The ``[augment]`` table applied to training batches.

    Attributes:
        config: The table.
        spatial_rank: Spatial dimensions of one sample (1, 2 or 3).
    """

    def __init__(self, config: AugmentConfig, spatial_rank: int) -> None:
        """Check ``config`` against the samples' spatial rank.

        Raises:
            UserError: A flip axis that the samples do not have (see `check_augment`).
        """
        check_augment(config, spatial_rank)
        self.config = config
        self.spatial_rank = spatial_rank
        self._flip_dims = tuple(axis + 1 for axis in config.flip_axes)  # spatial axis k is tensor dim k + 1

    @property
    def active(self) -> bool:
        """Whether any augmentation is on (an inactive augmenter returns batches unchanged)."""
        return self.config.active

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """An augmented copy of the batch ``x`` (``(N, C, *spatial)``, on its device); ``x`` when inactive.

        Raises:
            ValueError: ``x`` does not have ``2 + spatial_rank`` dimensions.
        """
        if not self.active:
            return x
        if x.dim() != 2 + self.spatial_rank:
            raise ValueError(f"expected a batch (N, C, *spatial) with {self.spatial_rank} spatial dimensions, "
                             f"got shape {tuple(x.shape)}")  # fmt: skip
        for dim in self._flip_dims:
            x = self._flip(x, dim)
        if self.config.crop_padding:
            x = self._crop(x, self.config.crop_padding)
        if self.config.noise_std:
            if not x.is_floating_point():
                x = x.float()
            x = x + torch.randn(x.shape, device=x.device, dtype=x.dtype) * self.config.noise_std
        return x

    def pair(self, x: torch.Tensor, masks: torch.Tensor, fill: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """An augmented copy of a batch and its segmentation masks ``(N, *spatial)``: each sample's flips and
        crop move its mask with it (pixels a crop brings in are labelled ``fill``); noise touches ``x`` only.

        Returns ``(x, masks)`` unchanged when inactive.
        """
        if not self.active:
            return x, masks
        geometric = bool(self._flip_dims or self.config.crop_padding)
        if geometric:  # the mask as one more channel, shifted so that a crop's zero padding reads `fill`
            both = torch.cat([x.float(), (masks.to(torch.float32) - fill).unsqueeze(1)], dim=1)
            for dim in self._flip_dims:
                both = self._flip(both, dim)
            if self.config.crop_padding:
                both = self._crop(both, self.config.crop_padding)
            x, masks = both[:, :-1], (both[:, -1].round() + fill).to(masks.dtype)
        if self.config.noise_std:
            if not x.is_floating_point():
                x = x.float()
            x = x + torch.randn(x.shape, device=x.device, dtype=x.dtype) * self.config.noise_std
        return x, masks

    @staticmethod
    def _flip(x: torch.Tensor, dim: int) -> torch.Tensor:
        """Each sample flipped along ``dim`` with probability 0.5."""
        chosen = torch.rand(x.shape[0], device=x.device) < 0.5
        return torch.where(chosen.view(-1, *[1] * (x.dim() - 1)), x.flip(dim), x)

    def _crop(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        """Each sample zero-padded by ``padding`` on every side, then cut back to its size at a random offset."""
        n, rank = x.shape[0], self.spatial_rank
        padded = F.pad(x, [padding] * (2 * rank))
        offsets = torch.randint(0, 2 * padding + 1, (n, rank), device=x.device)
        dims = x.dim()
        index: list[torch.Tensor] = [
            torch.arange(n, device=x.device).view(n, *[1] * (dims - 1)),
            torch.arange(x.shape[1], device=x.device).view(1, -1, *[1] * (dims - 2)),
        ]
        for k in range(rank):
            size = x.shape[2 + k]
            positions = offsets[:, k : k + 1] + torch.arange(size, device=x.device)  # (N, size)
            shape = [n, 1] + [1] * rank
            shape[2 + k] = size
            index.append(positions.view(shape))
        return padded[tuple(index)]
