"""The built-in shapes segmentation dataset: shapes, determinism, streams, class shares and arguments."""

from __future__ import annotations

import numpy as np
import pytest

from menndl.data import shapes
from menndl.data.shapes import CLASSES, make_shapes2d

SMALL = {"n_train": 60, "n_test": 40, "size": 24}


@pytest.fixture(scope="module")
def default() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The default dataset, generated once."""
    return make_shapes2d()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical: same shape, dtype and bytes."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _iou(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """IoU of each of the ``k`` classes (NaN for a class absent from ``y_true`` and ``y_pred``)."""
    counts = np.bincount(y_true.ravel().astype(np.int64) * k + y_pred.ravel(), minlength=k * k).reshape(k, k)
    hits = np.diag(counts).astype(np.float64)
    union = counts.sum(0) + counts.sum(1) - hits
    return np.where(union > 0, hits / np.maximum(union, 1), np.nan)


def test_default_shapes_and_dtypes(default: tuple[np.ndarray, ...]) -> None:
    x, y, x_test, y_test = default
    assert x.shape == (2000, 1, 32, 32) and y.shape == (2000, 32, 32)
    assert x_test.shape == (500, 1, 32, 32) and y_test.shape == (500, 32, 32)
    for image in (x, x_test):
        assert image.dtype == np.float32 and image.flags.c_contiguous
    for mask in (y, y_test):
        assert mask.dtype == np.uint8 and mask.flags.c_contiguous
    assert CLASSES == ("background", "disc", "rectangle", "triangle")


def test_custom_sizes_and_numpy_integers() -> None:
    x, y, x_test, y_test = make_shapes2d(seed=5, n_train=7, n_test=3, size=shapes.MIN_SIZE)
    assert x.shape == (7, 1, 8, 8) and y.shape == (7, 8, 8)
    assert x_test.shape == (3, 1, 8, 8) and y_test.shape == (3, 8, 8)
    odd = make_shapes2d(seed=1, n_train=3, n_test=2, size=13)
    assert odd[0].shape == (3, 1, 13, 13) and odd[3].shape == (2, 13, 13)
    a = make_shapes2d(seed=np.int64(2), n_train=np.int32(10), n_test=np.int64(5), size=np.int16(16))
    b = make_shapes2d(seed=2, n_train=10, n_test=5, size=16)
    assert all(_same(u, v) for u, v in zip(a, b))


def test_deterministic() -> None:
    first = make_shapes2d(seed=11, **SMALL)
    second = make_shapes2d(seed=11, **SMALL)
    assert all(_same(a, b) for a, b in zip(first, second))


def test_seeds_differ() -> None:
    a = make_shapes2d(seed=0, **SMALL)
    b = make_shapes2d(seed=1, **SMALL)
    for u, v in zip(a, b):
        assert not np.array_equal(u, v)


def test_global_random_state_untouched() -> None:
    state = np.random.get_state()
    expected = np.random.random(4)
    np.random.set_state(state)
    make_shapes2d(seed=3, **SMALL)
    assert np.array_equal(np.random.random(4), expected)


def test_test_stream_independent_of_training_stream() -> None:
    x, y, x_test, y_test = make_shapes2d(seed=4, n_train=40, n_test=40, size=16)
    # equal sizes: the two streams still give different data (not the same draws twice)
    assert not np.array_equal(x, x_test) and not np.array_equal(y, y_test)
    # the test set does not depend on how many training images were drawn, nor the reverse
    _, _, x_test_more, y_test_more = make_shapes2d(seed=4, n_train=300, n_test=40, size=16)
    assert _same(x_test, x_test_more) and _same(y_test, y_test_more)
    x_more, y_more, _, _ = make_shapes2d(seed=4, n_train=40, n_test=300, size=16)
    assert _same(x, x_more) and _same(y, y_more)


def test_labels_and_class_shares(default: tuple[np.ndarray, ...]) -> None:
    x, y, _, y_test = default
    for mask in (y, y_test):
        assert mask.max() < len(CLASSES)
        share = np.bincount(mask.ravel(), minlength=len(CLASSES)) / mask.size
        assert 0.6 < share[0] < 0.85  # background is the majority
        assert (share[1:] > 0.05).all()  # every shape class is well represented ...
        assert share[1:].max() < 1.5 * share[1:].min()  # ... and about as much as the others
    # every image holds a shape, and shapes are cut by the border
    assert (y.reshape(len(y), -1) > 0).any(axis=1).all()
    border = np.concatenate([y[:, 0], y[:, -1], y[:, :, 0], y[:, :, -1]], axis=1)
    assert (border > 0).mean() > 0.1
    # some images hold several classes, some pixels of one class touch another (overlap or contact)
    classes_per_image = [(np.bincount(m.ravel(), minlength=4)[1:] > 0).sum() for m in y[:200]]
    assert max(classes_per_image) == 3 and min(classes_per_image) == 1
    assert ((y[:, :, 1:] != y[:, :, :-1]) & (y[:, :, 1:] > 0) & (y[:, :, :-1] > 0)).any()


def test_image_statistics_are_finite_and_moderate(default: tuple[np.ndarray, ...]) -> None:
    x, y, x_test, _ = default
    for image in (x, x_test):
        assert np.isfinite(image).all()
        assert abs(float(image.mean())) < 0.1 and 0.3 < float(image.std()) < 1.0
        assert np.abs(image).max() < 5.0
    # the per-image noise (a horizontal neighbour difference in the background) varies from image to image
    background = (y[:, :, 1:] == 0) & (y[:, :, :-1] == 0)
    step = np.diff(x[:, 0], axis=2)
    noise = np.sqrt([(s[b] ** 2).mean() / 2.0 for s, b in zip(step[:300], background[:300])])
    assert noise.min() < 0.1 and noise.max() > 0.2


def test_intensity_does_not_tell_the_classes_apart(default: tuple[np.ndarray, ...]) -> None:
    x, y, x_test, y_test = default
    k = len(CLASSES)
    # each image's intensity relative to its own median: shapes are both brighter and darker than it
    relative = x[:, 0] - np.median(x[:, 0], axis=(1, 2), keepdims=True)
    for c in range(1, k):
        brighter = float((relative[y == c] > 0).mean())
        assert 0.35 < brighter < 0.65
        spread = np.abs(relative[y == c])
        assert abs(float(spread.mean()) - float(np.abs(relative[y > 0]).mean())) < 0.05
    # the best classifier of a pixel's relative intensity alone (the majority class of its bin on the training
    # set) is far from segmenting the test set
    edges = np.quantile(relative, np.linspace(0.0, 1.0, 65)[1:-1])
    bins = np.digitize(relative, edges)
    counts = np.zeros((len(edges) + 1, k), dtype=np.int64)
    np.add.at(counts, (bins.ravel(), y.ravel()), 1)
    rule = counts.argmax(axis=1)
    test_relative = x_test[:, 0] - np.median(x_test[:, 0], axis=(1, 2), keepdims=True)
    predicted = rule[np.digitize(test_relative, edges)]
    iou = _iou(y_test, predicted, k)
    assert np.nanmean(iou) < 0.4  # the U-Net baseline reaches about 0.6
    assert (np.nan_to_num(iou[1:]) < 0.25).all()  # at best it tells a shape from the background, not which
    # as a check of the measure: the masks themselves score 1
    assert np.nanmean(_iou(y_test, y_test.astype(np.int64), k)) == 1.0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("seed", -1, "seed must be at least 0"),
        ("seed", 1.5, "seed must be an integer"),
        ("n_train", 0, "n_train must be at least 1"),
        ("n_test", True, "n_test must be an integer"),
        ("size", 7, "size must be at least 8"),
        ("size", "32", "size must be an integer"),
    ],
)
def test_bad_arguments(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_shapes2d(**{name: value})  # type: ignore[arg-type]
