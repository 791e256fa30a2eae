"""The worker's `Augmenter`: per-sample flips, padded crops and noise on whole batches, and its check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from menndl.data.augment_check import check_augment
from menndl.errors import UserError
from menndl.job import AugmentConfig

torch = pytest.importorskip("torch")

from menndl.worker.augment import Augmenter  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def batch(n: int, spatial: tuple[int, ...], channels: int = 2) -> torch.Tensor:
    """Distinct values everywhere (so any flip or shift shows), all positive (so the zero padding shows)."""
    return torch.arange(1, 1 + n * channels * int(torch.tensor(spatial).prod()), dtype=torch.float32).view(
        n, channels, *spatial
    )


@pytest.mark.parametrize("spatial", [(12,), (6, 7), (4, 5, 6)])
def test_shapes_dtype_and_device_kept(spatial: tuple[int, ...]) -> None:
    rank = len(spatial)
    augment = Augmenter(AugmentConfig(flip_axes=tuple(range(1, rank + 1)), crop_padding=2, noise_std=0.1), rank)
    assert augment.active
    x = batch(16, spatial)
    out = augment(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(x, batch(16, spatial))  # the input is not changed in place


@pytest.mark.parametrize("spatial, axis", [((10,), 1), ((6, 7), 1), ((6, 7), 2), ((4, 5, 6), 3)])
def test_flips_some_samples_and_not_others(spatial: tuple[int, ...], axis: int) -> None:
    torch.manual_seed(0)
    x = batch(64, spatial)
    out = Augmenter(AugmentConfig(flip_axes=(axis,)), len(spatial))(x)
    flipped = x.flip(axis + 1)
    as_is = (out == x).flatten(1).all(dim=1)
    reversed_ = (out == flipped).flatten(1).all(dim=1)
    assert bool((as_is ^ reversed_).all())  # each sample exactly one of the two, all its channels together
    assert 10 < int(reversed_.sum()) < 54  # about half


def test_flips_along_two_axes_are_independent() -> None:
    torch.manual_seed(1)
    x = batch(200, (5, 6), channels=1)
    out = Augmenter(AugmentConfig(flip_axes=(1, 2)), 2)(x)
    kinds = {(bool(torch.equal(o, s.flip(1))), bool(torch.equal(o, s.flip(2)))) for o, s in zip(out, x)}
    kinds |= {("both",) for o, s in zip(out, x) if torch.equal(o, s.flip(1).flip(2))}
    assert {(True, False), (False, True), ("both",)} <= kinds


@pytest.mark.parametrize("spatial", [(15,), (9, 11), (7, 7, 7)])
@pytest.mark.parametrize("padding", [1, 3])
def test_crop_shifts_by_at_most_the_padding(spatial: tuple[int, ...], padding: int) -> None:
    torch.manual_seed(2)
    n, rank = 64, len(spatial)
    x = torch.zeros(n, 1, *spatial)
    centre = tuple(s // 2 for s in spatial)
    x[(slice(None), 0, *centre)] = 1.0
    out = Augmenter(AugmentConfig(crop_padding=padding), rank)(x)
    assert out.shape == x.shape
    assert torch.equal(out.flatten(1).sum(dim=1), torch.ones(n))  # the spike stays inside: nothing else appears
    where = torch.stack([torch.nonzero(sample[0])[0] for sample in out])  # (n, rank)
    shift = where - torch.tensor(centre)
    assert int(shift.abs().max()) <= padding
    assert len({tuple(s.tolist()) for s in shift}) >= min(4, (2 * padding + 1) ** rank)  # per-sample offsets
    for k in range(rank):
        assert int(shift[:, k].max()) == padding and int(shift[:, k].min()) == -padding


def test_crop_is_a_window_of_the_zero_padded_sample() -> None:
    torch.manual_seed(3)
    x = batch(32, (6, 8))
    p = 2
    out = Augmenter(AugmentConfig(crop_padding=p), 2)(x)
    padded = torch.nn.functional.pad(x, [p, p, p, p])
    for sample, source in zip(out, padded):
        windows = [source[:, i : i + 6, j : j + 8] for i in range(2 * p + 1) for j in range(2 * p + 1)]
        assert any(torch.equal(sample, w) for w in windows)


def test_noise_has_the_configured_std() -> None:
    torch.manual_seed(4)
    x = torch.zeros(256, 3, 32, 32)
    out = Augmenter(AugmentConfig(noise_std=0.3), 2)(x)
    assert abs(float(out.std()) - 0.3) < 0.01 and abs(float(out.mean())) < 0.01
    assert Augmenter(AugmentConfig(noise_std=0.5), 2)(torch.zeros(2, 1, 4, 4, dtype=torch.uint8)).is_floating_point()


def test_inactive_config_returns_the_input() -> None:
    augment = Augmenter(AugmentConfig(), 2)
    assert not augment.active
    x = batch(4, (3, 3))
    assert augment(x) is x


def test_seeded_runs_repeat() -> None:
    config = AugmentConfig(flip_axes=(1, 2), crop_padding=2, noise_std=0.2)
    x = batch(32, (8, 8))
    torch.manual_seed(7)
    first = Augmenter(config, 2)(x)
    torch.manual_seed(7)
    again = Augmenter(config, 2)(x)
    torch.manual_seed(8)
    other = Augmenter(config, 2)(x)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_flip_axis_the_samples_lack_is_a_one_line_error_at_construction() -> None:
    with pytest.raises(UserError) as info:
        Augmenter(AugmentConfig(flip_axes=(2,)), 1)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("augment.flip_axes: axis 2 does not exist for 1-D samples")
    with pytest.raises(UserError, match="axis 3 does not exist for 2-D samples"):
        check_augment(AugmentConfig(flip_axes=(1, 3)), 2)
    check_augment(AugmentConfig(flip_axes=(1, 2, 3)), 3)
    with pytest.raises(UserError, match="1 to 3 spatial dimensions"):
        check_augment(AugmentConfig(), 4)


def test_wrong_batch_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="2 spatial dimensions"):
        Augmenter(AugmentConfig(crop_padding=1), 2)(torch.zeros(2, 1, 5))


def test_the_check_imports_no_torch() -> None:
    code = "import sys, menndl.data.augment_check\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                         timeout=60)  # fmt: skip
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("spatial", [(12,), (6, 7), (4, 5, 6)])
def test_masks_move_with_their_pixels(spatial: tuple[int, ...]) -> None:
    """A mask that is a function of its pixel's value stays that function after flips and crops; a crop's
    new border is labelled ``fill``; noise leaves the masks alone."""
    rank = len(spatial)
    torch.manual_seed(4)
    augment = Augmenter(AugmentConfig(flip_axes=tuple(range(1, rank + 1)), crop_padding=2, noise_std=0.0), rank)
    x = batch(64, spatial, channels=1)
    masks = (x[:, 0].long() % 5).to(torch.uint8)
    out, moved = augment.pair(x, masks, fill=255)
    assert moved.dtype == torch.uint8 and moved.shape == masks.shape and out.shape == x.shape
    inside = out[:, 0] != 0  # pixels the crop kept (every input value is positive)
    assert torch.equal(moved[inside], (out[:, 0][inside].long() % 5).to(torch.uint8))
    assert bool((moved[~inside] == 255).all()) and bool((~inside).any())
    assert not torch.equal(moved, masks)  # something moved
    noisy = Augmenter(AugmentConfig(noise_std=1.0), rank)
    out, same = noisy.pair(x, masks)
    assert same is masks and not torch.equal(out, x)
