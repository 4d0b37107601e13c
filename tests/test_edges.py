"""Edge operators: the automatic gain and |response| under rescale, the same on every strip
height and on the whole-image path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convcli.image_io import Image, Samples, to_depth, unit_float
from convcli.pipeline.engine import filter_samples, plan_program
from convcli.process import EDGE_GAIN_BINS, FilterOptions, edge_gain, edge_image


def _whole(img: np.ndarray, bands: str, operator: str, options: FilterOptions) -> np.ndarray:
    image = Image(unit_float(img, "8"), bands, "8")
    out, _ = edge_image(image, operator, options)
    return to_depth(out.pixels, out.depth)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    operator=st.sampled_from(["sobel", "scharr", "laplacian", "log:sigma=1.2"]),
    rows=st.integers(1, 9),
    bands=st.sampled_from(["L", "RGB", "RGBA"]),
    smooth=st.booleans(),
)
def test_automatic_gain_is_the_same_on_strips_and_whole(seed, operator, rows, bands, smooth):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (19, 23, len(bands))).astype(np.uint8)
    if smooth:  # weak edges: the gain is large
        img = (img // 16 + 100).astype(np.uint8)
    opts = FilterOptions(backend="direct")
    out = filter_samples(img, None, opts, bands=bands, edge=operator, strip_rows=rows)
    np.testing.assert_array_equal(out, _whole(img, bands, operator, opts))


def test_the_gain_puts_the_percentile_at_white():
    hist = np.zeros(EDGE_GAIN_BINS, np.int64)
    hist[10] = 990  # most magnitudes small
    hist[100] = 10  # 1% large
    gain, level = edge_gain(hist, 1.0)
    assert level == pytest.approx(101 / EDGE_GAIN_BINS) and gain == pytest.approx(1 / level)
    assert edge_gain(np.zeros(EDGE_GAIN_BINS, np.int64), 1.0) == (1.0, 0.0)  # empty: x1
    flat = np.zeros(EDGE_GAIN_BINS, np.int64)
    flat[0] = 50
    assert edge_gain(flat, 1.0)[0] == 256.0  # at most x256
    strong = np.zeros(EDGE_GAIN_BINS, np.int64)
    strong[-1] = 5
    assert edge_gain(strong, 1.0)[0] == 1.0  # never darker than the raw magnitude


def test_rescale_stretches_the_absolute_laplacian():
    img = np.full((20, 20, 1), 80, np.uint8)
    img[8:12, 8:12] = 200  # a bright square on a flat field
    opts = FilterOptions(backend="direct", range_policy="rescale")
    out = filter_samples(img, None, opts, edge="laplacian")
    assert out[0, 0, 0] == 0  # flat: |response| 0 is black (a signed stretch made it grey)
    assert out.max() == 255
    np.testing.assert_array_equal(out, _whole(img, "L", "laplacian", opts))
    program = plan_program(Samples(img, "L", "8"), None, opts, edge="laplacian")
    assert program.abs_first and not program.edge_auto
