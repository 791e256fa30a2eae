"""A download-free 1-D regression dataset: noisy damped oscillations and their physical parameters.

Each sample is one channel of ``length`` readings taken over a window of ``WINDOW`` seconds
(so the sampling rate is ``length / WINDOW`` Hz), as a detector would record a ringing oscillator
that is struck at a random onset time::

    s(t) = b0 + b1 * t + noise(t),                                                  t < t0
    s(t) = b0 + b1 * t + A * exp(-gamma * (t - t0)) * sin(2 pi f (t - t0) + phi)
           + noise(t),                                                              t >= t0

with a random onset ``t0``, phase ``phi``, baseline offset ``b0`` and drift ``b1``, and white
Gaussian noise of a random standard deviation.  The three regression targets are the physical
parameters of the oscillation in their natural units (not standardised):

======  ==================  ==========  ==========================
column  parameter           unit        range (drawn uniformly)
======  ==================  ==========  ==========================
0       frequency ``f``     Hz          ``FREQUENCY``: 2 to 8
1       damping ``gamma``   1/s         ``DAMPING``: 0.5 to 4
2       amplitude ``A``     signal      ``AMPLITUDE``: 0.5 to 2
======  ==================  ==========  ==========================

(the float32 targets lie in these closed ranges).  The nuisance parameters are drawn uniformly
too: ``t0`` from ``ONSET`` (0 to 0.25 s), ``phi`` from 0 to 2 pi, ``b0`` from ``OFFSET``
(-0.5 to 0.5), ``b1`` from ``DRIFT`` (-0.5 to 0.5 per second) and the noise standard deviation
from ``NOISE`` (0.05 to 0.3), so the signal-to-noise ratio varies from sample to sample.

The noise is set so that the task is learnable but not saturated: the 4.4k-parameter CNN of
``benchmarks/regression_baseline.py`` reaches a test R² of about 0.89 after 20 epochs on the
default sizes, while a least-squares fit of the true model (started at the true parameters)
reaches about 0.95; the damping rate is the hardest target, the frequency the easiest.

Everything comes from ``numpy.random.default_rng``: the training set from ``default_rng(seed)``
and the test set from ``default_rng([seed, 1])``, an independent stream, so the same arguments
give bit-identical arrays, the test set does not depend on ``n_train`` nor the training set on
``n_test``.  No global random state is read or changed.
"""

from __future__ import annotations

import math

import numpy as np

#: Length of the recorded window, in seconds.
WINDOW = 1.0
#: Range of the oscillation frequency, in Hz (target column 0).
FREQUENCY = (2.0, 8.0)
#: Range of the damping rate of the envelope, in 1/s (target column 1).
DAMPING = (0.5, 4.0)
#: Range of the amplitude of the envelope at onset, in signal units (target column 2).
AMPLITUDE = (0.5, 2.0)
#: Range of the onset time, in seconds from the start of the window.
ONSET = (0.0, 0.25)
#: Range of the baseline offset, in signal units.
OFFSET = (-0.5, 0.5)
#: Range of the baseline drift, in signal units per second.
DRIFT = (-0.5, 0.5)
#: Range of the standard deviation of the white measurement noise, in signal units.
NOISE = (0.05, 0.3)
#: Names of the target columns, in order.
TARGETS = ("frequency", "damping", "amplitude")
#: Fewest samples per window: at least four per period of the fastest oscillation.
MIN_LENGTH = math.ceil(4 * FREQUENCY[1] * WINDOW)

#: Seed-sequence suffix of the test stream (the training stream is the bare seed).
_TEST_STREAM = 1


def make_oscillator1d(
    seed: int = 0, n_train: int = 4000, n_test: int = 1000, length: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate the damped-oscillator regression dataset.

    Args:
        seed: Non-negative integer seed; the training set is drawn from
            ``np.random.default_rng(seed)`` and the test set from ``np.random.default_rng([seed, 1])``.
        n_train: Number of training samples, at least 1.
        n_test: Number of test samples, at least 1.
        length: Number of readings per sample over the ``WINDOW``-second window, at least
            ``MIN_LENGTH`` (32).

    Returns:
        ``(x, y, x_test, y_test)``: x float32 of shape ``(n_train, 1, length)``, y float32 of
        shape ``(n_train, 3)`` with columns frequency (Hz), damping rate (1/s) and amplitude
        (signal units), and the test arrays of shapes ``(n_test, 1, length)`` and ``(n_test, 3)``.

    Raises:
        ValueError: If an argument is not an integer or is out of range; the message names it.
    """
    seed = integer_argument("seed", seed, 0)
    n_train = integer_argument("n_train", n_train, 1)
    n_test = integer_argument("n_test", n_test, 1)
    length = integer_argument("length", length, MIN_LENGTH)
    x, y = _draw(np.random.default_rng(seed), n_train, length)
    x_test, y_test = _draw(np.random.default_rng([seed, _TEST_STREAM]), n_test, length)
    return x, y, x_test, y_test


def integer_argument(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, if it is an integer (not a bool) of at least ``minimum`` (a generator's argument).

    Raises:
        ValueError: naming ``name`` and what it must be.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _draw(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``length`` readings from ``rng``, and their targets."""
    frequency = rng.uniform(*FREQUENCY, size=(n, 1))
    damping = rng.uniform(*DAMPING, size=(n, 1))
    amplitude = rng.uniform(*AMPLITUDE, size=(n, 1))
    onset = rng.uniform(*ONSET, size=(n, 1))
    phase = rng.uniform(0.0, 2.0 * math.pi, size=(n, 1))
    offset = rng.uniform(*OFFSET, size=(n, 1))
    drift = rng.uniform(*DRIFT, size=(n, 1))
    noise = rng.uniform(*NOISE, size=(n, 1))
    t = np.arange(length, dtype=np.float64) * (WINDOW / length)
    since = t - onset  # (n, length): time since the onset, negative before it
    ringing = amplitude * np.exp(-damping * since) * np.sin(2.0 * math.pi * frequency * since + phase)
    signal = np.where(since >= 0.0, ringing, 0.0) + offset + drift * t
    signal += noise * rng.standard_normal((n, length))
    x = signal.astype(np.float32)[:, None, :]
    y = np.concatenate([frequency, damping, amplitude], axis=1).astype(np.float32)
    return x, y
