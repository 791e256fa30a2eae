"""A download-free 2-D semantic segmentation dataset: noisy grey images of discs, rectangles and triangles.

Each sample is one channel of ``size`` x ``size`` pixels and a mask of the same size giving each pixel's
class.  Coordinates are in pixels, ``(x, y)`` the centre of column ``x`` and row ``y``, and every length is
drawn as a fraction of ``size``, so the images look alike at any size.  An image is::

    image(x, y) = b0 + g . ((x, y) / size - 1/2) + c(x, y) + sigma * noise(x, y)

with a background level ``b0``, a linear illumination gradient ``g`` (a random direction, a magnitude per
image width), white Gaussian noise of a random standard deviation ``sigma``, and ``c(x, y)`` the contrast of
the shape drawn last over the pixel (0 where there is none).  Each image holds 1 to ``MAX_SHAPES`` shapes
(the number drawn uniformly), drawn in order, each over the ones before it where they overlap; every shape
has a random class, centre (anywhere in the image, so shapes are cut by the border), size, orientation,
aspect ratio and contrast:

=====  =============  ================================================================================
class  name           shape (``r`` the shape's size, ``a`` its aspect ratio, ``theta`` its orientation)
=====  =============  ================================================================================
0      background     where no shape is
1      disc           filled ellipse of semi-axes ``r a`` and ``r / a``, rotated by ``theta``
2      rectangle      filled rectangle of half-sides ``h a`` and ``h / a``, ``h = r sqrt(pi) / 2``,
                      rotated by ``theta``
3      triangle       filled triangle whose vertices lie at angles ``theta + 2 pi k / 3`` (k = 0, 1, 2,
                      each jittered by up to ``TRIANGLE_JITTER`` rad) and distances ``R`` (each scaled
                      by ``TRIANGLE_SPREAD``) from the centre, ``R = r sqrt(4 pi / (3 sqrt 3))``
=====  =============  ================================================================================

so the three shapes of one ``r`` have about the same area ``pi r^2`` and the classes about the same share
of pixels.  The parameters are drawn uniformly: the class from 1 to 3, the centre over the image, ``r``
from ``RADIUS`` (0.1 to 0.25 of ``size``), ``a`` from ``ASPECT`` (1 to 1.4), ``theta`` from 0 to 2 pi, the
contrast's magnitude from ``CONTRAST`` (0.4 to 1.0) and its sign (brighter or darker than the background)
at even odds; the background level from ``LEVEL`` (-0.5 to 0.5), the gradient's magnitude from
``GRADIENT`` (0 to 1 per image width) and ``sigma`` from ``NOISE`` (0.05 to 0.25).  The contrast is drawn
alike for every class and the same contrast may be brighter or darker, so a pixel's intensity says at
best whether a shape covers it, never which: the network must see the shape.

The noise is set so that the task is learnable but not saturated: the 29.5k-parameter U-Net of
``benchmarks/segmentation_baseline.py`` reaches a test mIoU of about 0.61 (pixel accuracy about 0.92;
IoU 0.97 for the background, 0.41 to 0.58 for the shapes, rectangles the hardest) after 20 epochs on the
default sizes, and still improves with capacity and training (about 0.65 after 60 epochs, 0.67 at 4x the
parameters after 30), while the best classifier of each pixel's intensity alone (relative to its image's
median) reaches about 0.3, with an IoU of about 0.15 at most for any shape class.  The small shapes (``r``
down to 3.2 pixels at the default size), the ellipses' and rectangles' aspect ratios, occlusion and the
weakest contrasts under the strongest noise keep a share of the pixels ambiguous.

Everything comes from ``numpy.random.default_rng``: the training set from ``default_rng(seed)`` and the
test set from ``default_rng([seed, 1])``, an independent stream, so the same arguments give bit-identical
arrays, the test set does not depend on ``n_train`` nor the training set on ``n_test``.  No global random
state is read or changed.
"""

from __future__ import annotations

import math

import numpy as np

from menndl.data.oscillator import integer_argument

#: Names of the classes, by mask value.
CLASSES = ("background", "disc", "rectangle", "triangle")
#: Most shapes in one image (the number is drawn uniformly from 1 to this).
MAX_SHAPES = 4
#: Range of a shape's size ``r``, as a fraction of the image size (the radius of a disc of the same area).
RADIUS = (0.1, 0.25)
#: Range of the aspect ratio of discs and rectangles (the ellipse's or rectangle's axes are ``r a`` and ``r / a``).
ASPECT = (1.0, 1.4)
#: Most jitter of the angle of a triangle's vertex, in radians.
TRIANGLE_JITTER = 0.35
#: Range of the factor on the distance of a triangle's vertex from its centre.
TRIANGLE_SPREAD = (0.85, 1.15)
#: Range of the magnitude of a shape's contrast to the background (its sign is drawn at even odds).
CONTRAST = (0.4, 1.0)
#: Range of the background level.
LEVEL = (-0.5, 0.5)
#: Range of the magnitude of the illumination gradient, per image width.
GRADIENT = (0.0, 1.0)
#: Range of the standard deviation of the white noise.
NOISE = (0.05, 0.25)
#: Smallest image size, in pixels.
MIN_SIZE = 8

#: Seed-sequence suffix of the test stream (the training stream is the bare seed).
_TEST_STREAM = 1
#: Images rendered at once (bounds the memory of the geometry; the arrays do not depend on it).
_CHUNK = 256


def make_shapes2d(
    seed: int = 0, n_train: int = 2000, n_test: int = 500, size: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate the shapes segmentation dataset.

    Args:
        seed: Non-negative integer seed; the training set is drawn from
            ``np.random.default_rng(seed)`` and the test set from ``np.random.default_rng([seed, 1])``.
        n_train: Number of training images, at least 1.
        n_test: Number of test images, at least 1.
        size: Height and width of the images in pixels, at least ``MIN_SIZE`` (8).

    Returns:
        ``(x, y, x_test, y_test)``: x float32 of shape ``(n_train, 1, size, size)``, y uint8 of shape
        ``(n_train, size, size)`` with the class of each pixel (an index into `CLASSES`), and the test
        arrays of shapes ``(n_test, 1, size, size)`` and ``(n_test, size, size)``.

    Raises:
        ValueError: If an argument is not an integer or is out of range; the message names it.
    """
    seed = integer_argument("seed", seed, 0)
    n_train = integer_argument("n_train", n_train, 1)
    n_test = integer_argument("n_test", n_test, 1)
    size = integer_argument("size", size, MIN_SIZE)
    x, y = _draw(np.random.default_rng(seed), n_train, size)
    x_test, y_test = _draw(np.random.default_rng([seed, _TEST_STREAM]), n_test, size)
    return x, y, x_test, y_test


def _draw(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``size`` x ``size`` pixels from ``rng``, and their masks."""
    shape = (n, MAX_SHAPES)
    count = rng.integers(1, MAX_SHAPES, size=(n, 1), endpoint=True)
    kind = rng.integers(1, len(CLASSES), size=shape)  # 1 disc, 2 rectangle, 3 triangle
    kind = np.where(np.arange(MAX_SHAPES) < count, kind, 0)  # 0: no shape in this slot
    centre = rng.uniform(0.0, size, size=(n, MAX_SHAPES, 2))
    radius = rng.uniform(*RADIUS, size=shape) * size
    aspect = rng.uniform(*ASPECT, size=shape)
    angle = rng.uniform(0.0, 2.0 * math.pi, size=shape)
    jitter = rng.uniform(-TRIANGLE_JITTER, TRIANGLE_JITTER, size=(n, MAX_SHAPES, 3))
    spread = rng.uniform(*TRIANGLE_SPREAD, size=(n, MAX_SHAPES, 3))
    contrast = rng.uniform(*CONTRAST, size=shape) * np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    level = rng.uniform(*LEVEL, size=n)
    gradient = rng.uniform(*GRADIENT, size=n)
    direction = rng.uniform(0.0, 2.0 * math.pi, size=n)
    noise = rng.uniform(*NOISE, size=n)
    white = rng.standard_normal((n, size, size), dtype=np.float32)

    # triangle vertices (n, slots, 3, 2) about the shape's centre
    vertex_angle = angle[..., None] + 2.0 * math.pi * np.arange(3) / 3.0 + jitter
    vertex_distance = radius[..., None] * math.sqrt(4.0 * math.pi / (3.0 * math.sqrt(3.0))) * spread
    vertices = vertex_distance[..., None] * np.stack([np.cos(vertex_angle), np.sin(vertex_angle)], axis=-1)

    pixel = np.arange(size, dtype=np.float64) + 0.5
    px, py = pixel[None, None, :], pixel[None, :, None]  # (1, 1, size) columns, (1, size, 1) rows
    x = np.empty((n, 1, size, size), dtype=np.float32)
    y = np.zeros((n, size, size), dtype=np.uint8)
    for first in range(0, n, _CHUNK):
        part = slice(first, min(first + _CHUNK, n))
        gx = (gradient[part] * np.cos(direction[part]))[:, None, None]
        gy = (gradient[part] * np.sin(direction[part]))[:, None, None]
        image = level[part][:, None, None] + gx * (px / size - 0.5) + gy * (py / size - 0.5)
        offset = np.zeros_like(image)
        mask = y[part]
        for slot in range(MAX_SHAPES):
            dx = px - centre[part, slot, 0, None, None]
            dy = py - centre[part, slot, 1, None, None]
            cos = np.cos(angle[part, slot])[:, None, None]
            sin = np.sin(angle[part, slot])[:, None, None]
            u, v = cos * dx + sin * dy, cos * dy - sin * dx  # in the shape's own axes
            r = radius[part, slot, None, None]
            a = aspect[part, slot, None, None]
            disc = (u / (r * a)) ** 2 + (v * a / r) ** 2 <= 1.0
            half = r * (math.sqrt(math.pi) / 2.0)
            rectangle = (np.abs(u) <= half * a) & (np.abs(v) <= half / a)
            triangle = _inside_triangle(vertices[part, slot], dx, dy)
            which = kind[part, slot, None, None]
            inside = np.where(which == 1, disc, np.where(which == 2, rectangle, triangle)) & (which > 0)
            mask[inside] = np.broadcast_to(which, inside.shape)[inside]
            offset = np.where(inside, contrast[part, slot, None, None], offset)
        image += offset + noise[part][:, None, None] * white[part]
        x[part, 0] = image
    return x, y


def _inside_triangle(vertices: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Whether the points ``(dx, dy)`` (broadcast to ``(m, size, size)``) lie in the triangles ``vertices``
    ``(m, 3, 2)``.

    The vertices are in counter-clockwise order (increasing angle), so a point is inside when it lies on
    the left of (or on) every edge.
    """
    inside = np.ones(np.broadcast_shapes(dx.shape, dy.shape), dtype=bool)
    for k in range(3):
        ax, ay = vertices[:, k, 0, None, None], vertices[:, k, 1, None, None]
        bx, by = vertices[:, (k + 1) % 3, 0, None, None], vertices[:, (k + 1) % 3, 1, None, None]
        inside &= (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) >= 0.0
    return inside
