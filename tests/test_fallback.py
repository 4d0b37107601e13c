"""The NumPy fallback of the C extension gives the C extension's results: to the bit for
rounding, counting and PNG unfiltering; within float rounding for correlation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convcli import _fallback
from convcli.backends.borders import BOUNDARY_MODES, index_map, pad_widths

_native = pytest.importorskip("convcli._native")


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 4),
    kh=st.integers(1, 5), kw=st.integers(1, 5), mode=st.sampled_from(BOUNDARY_MODES),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
    separable=st.booleans(),
)  # fmt: skip
def test_correlation_matches_the_c_loops(h, w, c, kh, kw, mode, dtype, seed, separable):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(h, w, c)).astype(dtype)
    origin = (int(rng.integers(kh)), int(rng.integers(kw)))
    (top, bottom), (left, right) = pad_widths((kh, kw), origin)
    rows = index_map(h, top, bottom, mode)
    cols = index_map(w, left, right, mode)
    y0 = int(rng.integers(h + 1))
    y1 = int(rng.integers(y0, h + 1))
    ours, theirs = np.zeros_like(src), np.zeros_like(src)
    if separable:
        kv, kr = rng.normal(size=kh).astype(dtype), rng.normal(size=kw).astype(dtype)
        args = (h, w, c, kv, kh, kr, kw, rows, cols, left, 0.25, y0, y1)
        _fallback.correlate_separable(src, ours, *args)
        _native.correlate_separable(src, theirs, *args)
    else:
        k = rng.normal(size=(kh, kw)).astype(dtype)
        k[rng.random((kh, kw)) < 0.2] = 0
        args = (h, w, c, k, kh, kw, rows, cols, left, 0.25, y0, y1)
        _fallback.correlate2d(src, ours, *args)
        _native.correlate2d(src, theirs, *args)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours[y0:y1], theirs[y0:y1], rtol=tol, atol=tol * kh * kw)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from(
            [0.5 / 255, 1.5 / 255, 2.5 / 65535, -0.0, 1.0, 1.0000001]
        ),
        min_size=1, max_size=64,
    ),
    top=st.sampled_from([255.0, 65535.0]), f64=st.booleans(),
)  # fmt: skip
def test_rounding_and_counting_match_to_the_bit(values, top, f64):
    src = np.array(values, dtype=np.float64 if f64 else np.float32)
    out_type = np.uint8 if top == 255.0 else np.uint16
    ours, theirs = np.empty(src.size, out_type), np.empty(src.size, out_type)
    _fallback.to_depth(src, ours, top, int(f64))
    _native.to_depth(src, theirs, top, int(f64))
    np.testing.assert_array_equal(ours, theirs)
    assert _fallback.count_outside(src, int(f64), -0.002, 1.002) == tuple(
        _native.count_outside(src, int(f64), -0.002, 1.002)
    )


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 6), stride_px=st.integers(1, 12), bpp=st.sampled_from([1, 2, 3, 4, 6, 8]),
    filters=st.lists(st.integers(0, 4), min_size=6, max_size=6), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_png_unfilter_matches_to_the_bit(height, stride_px, bpp, filters, seed):
    rng = np.random.default_rng(seed)
    stride = stride_px * bpp
    raw = bytearray()
    for y in range(height):
        raw += bytes([filters[y]]) + rng.integers(0, 256, stride, dtype=np.uint8).tobytes()
    ours, theirs = bytearray(height * stride), bytearray(height * stride)
    _fallback.png_unfilter(bytes(raw), ours, height, stride, bpp)
    _native.png_unfilter(bytes(raw), theirs, height, stride, bpp)
    assert ours == theirs
    with pytest.raises(ValueError, match="invalid PNG filter type 7"):
        _fallback.png_unfilter(b"\x07" + bytes(stride), bytearray(stride), 1, stride, bpp)
