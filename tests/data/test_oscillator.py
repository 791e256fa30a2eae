"""The built-in damped-oscillator regression dataset: shapes, determinism, streams, targets and arguments."""

from __future__ import annotations

import numpy as np
import pytest

from menndl.data import oscillator
from menndl.data.oscillator import make_oscillator1d

SMALL = {"n_train": 300, "n_test": 200, "length": 48}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical: same shape, dtype and bytes."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _detrended(x: np.ndarray) -> np.ndarray:
    """The single channel of ``x`` (float64) minus each sample's least-squares line."""
    signal = x[:, 0, :].astype(np.float64)
    t = np.arange(signal.shape[1], dtype=np.float64)
    design = np.stack([np.ones_like(t), t], axis=1)
    coef = np.linalg.lstsq(design, signal.T, rcond=None)[0]
    return signal - (design @ coef).T


def test_default_shapes_and_dtypes() -> None:
    x, y, x_test, y_test = make_oscillator1d()
    assert x.shape == (4000, 1, 64) and y.shape == (4000, 3)
    assert x_test.shape == (1000, 1, 64) and y_test.shape == (1000, 3)
    for array in (x, y, x_test, y_test):
        assert array.dtype == np.float32
        assert array.flags.c_contiguous
        assert np.isfinite(array).all()


def test_custom_sizes() -> None:
    x, y, x_test, y_test = make_oscillator1d(seed=5, n_train=7, n_test=3, length=oscillator.MIN_LENGTH)
    assert x.shape == (7, 1, 32) and y.shape == (7, 3)
    assert x_test.shape == (3, 1, 32) and y_test.shape == (3, 3)


def test_numpy_integers_are_accepted() -> None:
    a = make_oscillator1d(seed=np.int64(2), n_train=np.int32(10), n_test=np.int64(5), length=np.int16(40))
    b = make_oscillator1d(seed=2, n_train=10, n_test=5, length=40)
    assert all(_same(u, v) for u, v in zip(a, b))


def test_deterministic() -> None:
    first = make_oscillator1d(seed=11, **SMALL)
    second = make_oscillator1d(seed=11, **SMALL)
    assert all(_same(a, b) for a, b in zip(first, second))


def test_seeds_differ() -> None:
    a = make_oscillator1d(seed=0, **SMALL)
    b = make_oscillator1d(seed=1, **SMALL)
    for u, v in zip(a, b):
        assert not np.array_equal(u, v)
    # the targets are not even shuffled copies of each other
    assert not np.array_equal(np.sort(a[1], axis=0), np.sort(b[1], axis=0))


def test_global_random_state_untouched() -> None:
    state = np.random.get_state()
    expected = np.random.random(4)
    np.random.set_state(state)
    make_oscillator1d(seed=3, **SMALL)
    assert np.array_equal(np.random.random(4), expected)


def test_test_stream_independent_of_training_stream() -> None:
    x, y, x_test, y_test = make_oscillator1d(seed=4, n_train=200, n_test=200, length=48)
    # equal sizes: the two streams still give different data (not the same draws twice)
    assert not np.array_equal(x, x_test) and not np.array_equal(y, y_test)
    assert not np.isin(y_test[:, 0], y[:, 0]).any()
    # the test set does not depend on how many training samples were drawn, nor the reverse
    _, _, x_test_more, y_test_more = make_oscillator1d(seed=4, n_train=500, n_test=200, length=48)
    assert _same(x_test, x_test_more) and _same(y_test, y_test_more)
    x_fewer, y_fewer, _, _ = make_oscillator1d(seed=4, n_train=200, n_test=50, length=48)
    assert _same(x, x_fewer) and _same(y, y_fewer)


def test_test_stream_is_seed_sequence_one() -> None:
    """The documented streams: training from ``default_rng(seed)``, test from ``default_rng([seed, 1])``."""
    _, y, _, y_test = make_oscillator1d(seed=9, n_train=20, n_test=20, length=32)
    low, high = oscillator.FREQUENCY
    assert np.array_equal(y[:, 0], np.random.default_rng(9).uniform(low, high, size=20).astype(np.float32))
    assert np.array_equal(y_test[:, 0], np.random.default_rng([9, 1]).uniform(low, high, size=20).astype(np.float32))


def test_target_ranges() -> None:
    _, y, _, y_test = make_oscillator1d(seed=6)
    documented = {"frequency": (2.0, 8.0), "damping": (0.5, 4.0), "amplitude": (0.5, 2.0)}
    assert oscillator.TARGETS == tuple(documented)
    assert (oscillator.FREQUENCY, oscillator.DAMPING, oscillator.AMPLITUDE) == tuple(documented.values())
    for targets in (y, y_test):
        assert np.isfinite(targets).all()
        for column, (low, high) in enumerate(documented.values()):
            values = targets[:, column]
            assert values.min() >= low and values.max() <= high
            # drawn across the whole range, not a corner of it
            span = high - low
            assert values.min() < low + 0.02 * span and values.max() > high - 0.02 * span
            assert abs(values.mean() - (low + high) / 2) < 0.05 * span


def test_frequency_target_is_the_dominant_frequency() -> None:
    x, y, _, _ = make_oscillator1d(seed=7, n_train=400, n_test=1, length=64)
    residual = _detrended(x)
    spectrum = np.abs(np.fft.rfft(residual, n=1024, axis=1))
    sampling_rate = 64 / oscillator.WINDOW
    peak = np.fft.rfftfreq(1024, d=1.0 / sampling_rate)[spectrum.argmax(axis=1)]
    assert np.mean(np.abs(peak - y[:, 0]) < 0.5) > 0.9


def test_amplitude_and_damping_targets_shape_the_signal() -> None:
    x, y, _, _ = make_oscillator1d(seed=8, n_train=600, n_test=1, length=64)
    residual = _detrended(x)
    # larger amplitude: larger oscillation
    assert np.corrcoef(residual.std(axis=1), y[:, 2])[0, 1] > 0.6
    # faster damping: the second half of the window holds less of the oscillation than the first
    early = np.abs(residual[:, 16:32]).mean(axis=1)
    late = np.abs(residual[:, 48:]).mean(axis=1)
    assert np.corrcoef(np.log(late / early), y[:, 1])[0, 1] < -0.3


def test_baselines_vary() -> None:
    """Each sample sits on its own baseline: the readings before any onset can be far from zero."""
    x, _, _, _ = make_oscillator1d(seed=10, n_train=300, n_test=1, length=64)
    first_readings = x[:, 0, :4].mean(axis=1)
    assert first_readings.std() > 0.2
    assert first_readings.min() < -0.3 and first_readings.max() > 0.3


@pytest.mark.parametrize(
    "argument, value",
    [
        ("seed", -1),
        ("seed", 1.5),
        ("seed", True),
        ("seed", None),
        ("n_train", 0),
        ("n_train", -5),
        ("n_train", 10.0),
        ("n_test", 0),
        ("n_test", "100"),
        ("length", oscillator.MIN_LENGTH - 1),
        ("length", 0),
        ("length", False),
    ],
)
def test_bad_arguments(argument: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        make_oscillator1d(**{argument: value})  # type: ignore[arg-type]
