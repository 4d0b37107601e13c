"""Whole-image filtering: alpha, kernels in sequence, range policies, edge magnitude."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convcli.errors import KernelError, UsageError
from convcli.filtering import convolve
from convcli.image_io import from_array
from convcli.kernels import Kernel
from convcli.process import FilterOptions, apply_range, edge_image, filter_image

BLUR = Kernel(np.ones((3, 3)) / 9)


def test_range_policies_exact_values():
    values = np.array([-0.5, -0.001, 0.0, 0.25, 1.0, 1.001, 1.5], dtype=np.float32)
    clipped, n = apply_range(values, "clip", "8")
    np.testing.assert_allclose(clipped, [0, 0, 0, 0.25, 1, 1, 1])
    assert n == 2  # -0.001 and 1.001 round to 0 and 255 anyway: only +-0.5 beyond count
    absolute, n = apply_range(values, "abs", "8")
    np.testing.assert_allclose(absolute, [0.5, 0.001, 0, 0.25, 1, 1, 1], rtol=1e-6)
    assert n == 1
    offset, n = apply_range(values, "offset", "8")
    np.testing.assert_allclose(offset, [0, 0.499, 0.5, 0.75, 1, 1, 1], rtol=1e-5)
    assert n == 3
    stretched, n = apply_range(values, "rescale", "8")
    np.testing.assert_allclose(stretched, (values + 0.5) / 2, rtol=1e-6)
    assert n == 0
    same, n = apply_range(values, "none", "float")
    assert same is values and n == 0
    with pytest.raises(UsageError, match="only for float output"):
        apply_range(values, "none", "8")
    with pytest.raises(UsageError, match="range policy must be one of"):
        apply_range(values, "wrap", "8")


@settings(max_examples=80, deadline=None)
@given(
    values=arrays(
        np.float32,
        st.integers(1, 40),
        elements=st.floats(-2, 3, width=32, allow_nan=False),
    ),
    depth=st.sampled_from(["8", "16"]),
)
def test_clip_matches_the_plain_formula(values, depth):
    half = 0.5 / (255 if depth == "8" else 65535)
    before = values.copy()
    clipped, n = apply_range(values, "clip", depth)
    assert np.array_equal(clipped, np.clip(values, 0, 1))
    assert n == int(np.count_nonzero((values < -half) | (values > 1 + half)))
    assert np.array_equal(values, before)  # the input is never modified
    given_bounds = apply_range(values, "clip", depth, bounds=(values.min(), values.max()))
    assert np.array_equal(given_bounds[0], clipped) and given_bounds[1] == n


def test_kernels_apply_in_sequence():
    rng = np.random.default_rng(0)
    pixels = rng.random((20, 30, 3)).astype(np.float32)
    image = from_array(pixels, depth="float")
    k2 = Kernel([[0, 0, 0], [0, 0, 1], [0, 0, 0]])  # shift
    out, report = filter_image(image, [BLUR, k2], FilterOptions(range_policy="none"))
    expected = convolve(convolve(pixels, BLUR), k2)
    np.testing.assert_allclose(out.pixels, expected, atol=1e-6)
    assert [s.kernel for s in report.steps] == [BLUR, k2]
    assert all(s.plan.backend in ("direct", "fft") for s in report.steps)


def test_premultiplied_alpha_gives_no_dark_fringe():
    # Left half opaque red, right half fully transparent black: premultiplied blurring keeps
    # the visible colour pure red; plain filtering darkens it towards black.
    pixels = np.zeros((8, 8, 4), dtype=np.float32)
    pixels[:, :4] = [1, 0, 0, 1]
    image = from_array(pixels, depth="8")
    out, _ = filter_image(image, [BLUR])
    edge = out.pixels[4, 4]  # first transparent column, partly covered after blurring
    assert edge[3] == pytest.approx(1 / 3, abs=1e-6)
    np.testing.assert_allclose(edge[:3], [1, 0, 0], atol=1e-6)
    plain, _ = filter_image(image, [BLUR], FilterOptions(alpha="plain"))
    assert plain.pixels[4, 4, 0] == pytest.approx(1 / 3, abs=1e-6)
    assert out.bands == "RGBA" and out.depth == "8"


def test_normalize_and_zero_sum_error():
    image = from_array(np.full((5, 5), 0.5, dtype=np.float32), depth="8")
    out, _ = filter_image(image, [Kernel(np.ones((3, 3)))], FilterOptions(normalize=True))
    np.testing.assert_allclose(out.pixels, 0.5, atol=1e-6)
    with pytest.raises(KernelError, match="sum to 0"):
        filter_image(image, [Kernel([[-1, 0, 1]])], FilterOptions(normalize=True))


def test_clip_counts_and_depth_override():
    image = from_array(np.full((4, 4), 0.8, dtype=np.float32), depth="8")
    out, report = filter_image(image, [Kernel([[2.0]])], FilterOptions(depth="16"))
    assert out.depth == "16" and report.depth == "16"
    assert report.out_of_range == 16 and report.samples == 16
    assert report.value_max == pytest.approx(1.6)
    np.testing.assert_allclose(out.pixels, 1.0)
    out, report = filter_image(image, [Kernel([[2.0]])], FilterOptions(depth="float"))
    assert report.range_policy == "none"
    np.testing.assert_allclose(out.pixels, 1.6, rtol=1e-6)


def test_edge_magnitude_of_a_step_is_one():
    pixels = np.zeros((9, 12), dtype=np.float32)
    pixels[:, 6:] = 1
    image = from_array(pixels, depth="8")
    for operator in ("sobel", "prewitt", "scharr"):
        out, report = edge_image(image, operator)
        np.testing.assert_allclose(out.pixels[4, 5:7, 0], [1.0, 1.0], atol=1e-6)
        assert np.all(out.pixels[:, :4] == 0) and np.all(out.pixels[:, 8:] == 0)
        assert len(report.steps) == 2
    lap, report = edge_image(image, "laplacian")
    assert report.range_policy == "abs"
    # 8-neighbour Laplacian: +3 beside the step, -3 on it; |.| then clipped to 1
    np.testing.assert_array_equal(lap.pixels[:, 5:7, 0], 1.0)
    assert np.all(lap.pixels[:, :5] == 0) and np.all(lap.pixels[:, 7:] == 0)
    assert report.out_of_range == 18
    with pytest.raises(UsageError, match="edge operator must be one of"):
        edge_image(image, "canny")


def test_edge_keeps_alpha():
    pixels = np.zeros((6, 6, 2), dtype=np.float32)
    pixels[..., 1] = np.linspace(0, 1, 36).reshape(6, 6)
    out, _ = edge_image(from_array(pixels, depth="8"), "sobel")
    assert out.bands == "LA"
    np.testing.assert_array_equal(out.pixels[..., 1], pixels[..., 1])
