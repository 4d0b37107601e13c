"""Kernel objects and the built-in named kernels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convcli.errors import KernelError, KernelSpecError
from convcli.kernels import BUILTINS, Kernel, Symmetry, builtin_kernel, parse_spec

K273 = np.array(
    [[1, 4, 7, 4, 1], [4, 16, 26, 16, 4], [7, 26, 41, 26, 7], [4, 16, 26, 16, 4], [1, 4, 7, 4, 1]],
    dtype=float,
)

small = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    elements=st.floats(-10, 10, allow_subnormal=False),
)


# -- the Kernel object -------------------------------------------------------------------------


def test_kernel_is_immutable_and_copies():
    src = np.array([[1.0, 2.0], [3.0, 4.0]])
    k = Kernel(src)
    src[0, 0] = 99
    assert k.weights[0, 0] == 1
    with pytest.raises(ValueError):
        k.weights[0, 0] = 5
    with pytest.raises(AttributeError):
        k.origin = (0, 0)  # type: ignore[misc]


def test_default_origin_and_rotation_moves_it():
    k = Kernel(np.arange(6.0).reshape(2, 3))
    assert k.origin == (1, 1)
    r = k.rotated()
    assert r.origin == (0, 1)
    np.testing.assert_array_equal(r.weights, [[5, 4, 3], [2, 1, 0]])
    assert r.rotated() == k and r.rotated().name == k.name


@settings(max_examples=50, deadline=None)
@given(w=small, data=st.data())
def test_rotating_twice_is_identity(w, data):
    origin = (data.draw(st.integers(0, w.shape[0] - 1)), data.draw(st.integers(0, w.shape[1] - 1)))
    k = Kernel(w, origin=origin)
    assert k.rotated().rotated() == k


@settings(max_examples=50, deadline=None)
@given(w=small)
def test_symmetry_classes_by_construction(w):
    n = max(w.shape)
    sq = np.zeros((2 * n + 1, 2 * n + 1))
    sq[: w.shape[0], : w.shape[1]] = w
    sym = Kernel(sq + sq[::-1, ::-1])
    anti = Kernel(sq - sq[::-1, ::-1])
    assert sym.symmetry is Symmetry.SYMMETRIC
    if np.abs(anti.weights).max() > 0:
        assert anti.symmetry is Symmetry.ANTISYMMETRIC
    # the same weights anchored off-centre are not point-symmetric about their origin
    if np.abs(sym.weights).max() > 0:
        assert Kernel(sym.weights, origin=(0, 0)).symmetry is Symmetry.ASYMMETRIC


@settings(max_examples=50, deadline=None)
@given(
    u=arrays(np.float64, st.integers(1, 9), elements=st.integers(-9, 9).map(float)),
    v=arrays(np.float64, st.integers(1, 9), elements=st.integers(-9, 9).map(float)),
)
def test_outer_products_are_separable_and_factors_reproduce(u, v):
    k = Kernel(np.outer(u, v))
    assert k.separable
    col, row = k.factors
    np.testing.assert_allclose(np.outer(col, row), k.weights, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 8))
def test_random_full_rank_matrices_are_not_separable(seed, n):
    w = np.random.default_rng(seed).standard_normal((n, n))
    k = Kernel(w)
    assert k.rank == np.linalg.matrix_rank(w) and not k.separable and k.factors is None


def test_the_273_kernel_is_rank_3_not_separable():
    k = Kernel(K273 / 273)
    assert k.rank == 3 and not k.separable and k.factors is None
    assert k.sum == pytest.approx(1.0)
    assert k.symmetry is Symmetry.SYMMETRIC


def test_integer_factors_for_sobel():
    col, row = builtin_kernel("sobel", axis="x").factors
    assert col.tolist() == [1, 2, 1] and row.tolist() == [-1, 0, 1]


def test_normalized_and_its_zero_sum_error():
    assert Kernel(np.ones((3, 3))).normalized().sum == pytest.approx(1.0)
    with pytest.raises(KernelError, match="cannot normalize kernel 'laplacian'.*sum to 0"):
        builtin_kernel("laplacian").normalized()
    tiny = Kernel([[1.0, -1.0 + 1e-9]])
    with pytest.raises(KernelError, match="sum to"):
        tiny.normalized()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([],), "at least one weight"),
        ((np.zeros((2, 2, 2)),), "1-D or 2-D"),
        (([[1.0, np.nan]],), "row 1, column 2 is nan"),
        (([[np.inf]],), "is inf"),
        ((np.zeros((1, 2000)),), "too large"),
        (([["a"]],), "must be numbers"),
    ],
)
def test_bad_weights(args, message):
    with pytest.raises(KernelError, match=message):
        Kernel(*args)


def test_bad_origin():
    with pytest.raises(KernelError, match="lies outside the 3x3 kernel"):
        Kernel(np.ones((3, 3)), origin=(3, 0))


# -- built-ins -----------------------------------------------------------------------------


GOLDEN = {
    "sobel:axis=x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel:axis=y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "prewitt:axis=x": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "scharr:axis=y": [[-3, -10, -3], [0, 0, 0], [3, 10, 3]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "laplacian:neighbours=8": [[1, 1, 1], [1, -8, 1], [1, 1, 1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "sharpen:amount=0": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "identity": [[1]],
    "box:size=2": [[0.25, 0.25], [0.25, 0.25]],
}


@pytest.mark.parametrize(("spec", "expected"), GOLDEN.items())
def test_golden_built_ins(spec, expected):
    np.testing.assert_allclose(parse_spec(spec).weights, expected, atol=1e-12)


@pytest.mark.parametrize(
    ("spec", "shape", "total", "symmetry", "separable"),
    [
        ("identity:size=5", (5, 5), 1, "symmetric", True),
        ("box:size=5", (5, 5), 1, "symmetric", True),
        ("gaussian:sigma=2", (13, 13), 1, "symmetric", True),
        ("gaussian:sigma=8", (49, 49), 1, "symmetric", True),
        ("gaussian:sigma=1,size=4", (4, 4), 1, "asymmetric", True),  # even: anchor off-centre
        ("unsharp:sigma=1,amount=2", (7, 7), 1, "symmetric", False),
        ("log:sigma=1.4", (13, 13), 0, "symmetric", False),
        ("sobel", (3, 3), 0, "antisymmetric", True),
        ("prewitt:axis=y", (3, 3), 0, "antisymmetric", True),
        ("scharr", (3, 3), 0, "antisymmetric", True),
        ("emboss:direction=n", (3, 3), 1, "asymmetric", False),
        ("emboss:direction=e", (3, 3), 1, "asymmetric", False),
        ("motion:length=9,angle=30", (17, 17), 1, "asymmetric", False),
        ("motion:length=5", (9, 9), 1, "asymmetric", True),
        ("laplacian", (3, 3), 0, "symmetric", False),
    ],
)
def test_built_in_properties(spec, shape, total, symmetry, separable):
    k = parse_spec(spec)
    assert k.shape == shape
    assert k.sum == pytest.approx(total, abs=1e-12)
    assert k.symmetry.value == symmetry
    assert k.separable == separable


def test_every_built_in_builds_with_defaults_and_is_listed():
    for name, spec in BUILTINS.items():
        required = {p.name: 1.5 for p in spec.params if p.default is None and p.name != "size"}
        k = builtin_kernel(name, **required)
        assert k.name.startswith(name)
        assert spec.description and spec.formula
        for p in spec.params:
            assert p.name in p.describe()


def test_motion_streak_starts_at_the_origin_and_points_along_the_angle():
    k = parse_spec("motion:length=5,angle=90")  # straight up
    w = k.weights
    assert w[k.origin] > 0
    assert w[: k.origin[0] + 1, k.origin[1]].sum() == pytest.approx(1.0)
    assert w[k.origin[0] + 1 :].sum() == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "gausian:sigma=2",
            "unknown kernel 'gausian' \\(did you mean 'gaussian'\\?\\); built-ins: ",
        ),
        ("gaussian", "gaussian: missing parameter 'sigma'"),
        ("gaussian:sigma=-1", "gaussian: sigma must be > 0, got -1"),
        ("gaussian:sigma=abc", "gaussian: sigma must be a number, got 'abc'"),
        (
            "gaussian:sigma=2,radius=3",
            "gaussian: unknown parameter 'radius' \\(parameters: sigma, size\\)",
        ),
        ("box:size=2.5", "box: size must be an integer, got '2.5'"),
        ("box:size=5000", "box: size 5000 is too large"),
        ("sobel:axis=z", "sobel: axis must be one of x, y, got 'z'"),
        ("gaussian:sigma", "expected key=value, got 'sigma'"),
        ("identity:size=4", "identity: size must be odd, got 4"),
        ("laplacian:neighbours=6", "laplacian: neighbours must be one of 4, 8"),
    ],
)
def test_spec_errors_are_one_line_and_name_the_problem(spec, message):
    with pytest.raises(KernelSpecError, match=message) as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["log:sigma=1e-300", "log:sigma=1e-80", "sharpen:amount=1e308"])
def test_extreme_parameters_are_a_spec_error_not_a_warning_or_traceback(spec):
    with pytest.raises(KernelSpecError, match="these parameters give no usable kernel") as info:
        parse_spec(spec)
    assert str(info.value).startswith(spec.split(":")[0] + "(")
    assert info.value.exit_code == 2


def test_optional_parameters_are_not_listed_as_required():
    from convcli.kernels import BUILTINS

    described = {p.name: p.describe() for p in BUILTINS["gaussian"].params}
    assert described == {"sigma": "sigma=float (required)", "size": "size=int (optional)"}
    assert parse_spec("gaussian:sigma=1").shape == (7, 7)  # size derived from sigma
    with pytest.raises(KernelSpecError, match="missing parameter 'sigma'"):
        parse_spec("gaussian:size=5")


@pytest.mark.parametrize(
    "angle, line",
    [(0, lambda w: w[8, 8:]), (90, lambda w: w[:9, 8][::-1]), (180, lambda w: w[8, :9][::-1])],
)
def test_motion_along_an_axis_is_a_uniform_streak(angle, line):
    w = builtin_kernel("motion", length=9, angle=angle).weights
    assert w.shape == (17, 17)
    np.testing.assert_allclose(line(w), np.full(9, 1 / 9), atol=1e-12)
    assert np.count_nonzero(np.abs(w) > 1e-12) == 9  # nothing off the streak


def test_motion_at_an_angle_weighs_every_step_of_the_streak_equally():
    k = builtin_kernel("motion", length=7, angle=30)
    w, r = k.weights, 6
    # the weight's centre of mass along the streak is the middle of the 7 steps
    ys, xs = np.mgrid[0 : w.shape[0], 0 : w.shape[1]]
    cx, cy = (w * (xs - r)).sum(), (w * (ys - r)).sum()
    np.testing.assert_allclose([cx, cy], [3 * np.cos(np.pi / 6), -3 * np.sin(np.pi / 6)], atol=1e-9)
