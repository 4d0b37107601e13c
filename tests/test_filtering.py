"""convolve/correlate: definitions, algebra, golden cases and backend agreement."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convcli import FilterOptions, _native, load_kernel
from convcli.backends import direct, fft
from convcli.errors import FilterError, UsageError
from convcli.filtering import convolve, correlate, filter_array, plan_filter
from convcli.image_io import Image, Samples
from convcli.kernels import Kernel, builtin_kernel
from convcli.pipeline.engine import filter_samples
from convcli.process import filter_image
from convcli.verify import LEVEL_TOLERANCE, written_levels

MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]
BACKENDS = ["direct", "fft"]
NP_PAD = {
    "reflect": "symmetric",
    "constant": "constant",
    "nearest": "edge",
    "mirror": "reflect",
    "wrap": "wrap",
}


def reference_correlate(image, weights, origin, mode, cval=0.0):
    """Correlation straight from the definition, in float64, for (H, W) or (H, W, C)."""
    img = np.asarray(image, dtype=np.float64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    h, w, _ = img.shape
    kh, kw = weights.shape
    widths = ((origin[0], kh - 1 - origin[0]), (origin[1], kw - 1 - origin[1]), (0, 0))
    extra = {"constant_values": cval} if mode == "constant" else {}
    padded = np.pad(img, widths, mode=NP_PAD[mode], **extra)
    out = np.zeros_like(img)
    for a in range(kh):
        for b in range(kw):
            out += weights[a, b] * padded[a : a + h, b : b + w]
    return out[:, :, 0] if squeeze else out


def reference_convolve(image, weights, origin, mode, cval=0.0):
    """Convolution from its own definition: I[y - a + o_r, x - b + o_c], no kernel flip helper."""
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    kh, kw = weights.shape
    out = np.zeros((h, w))
    big = max(h, w) * 4 + kh + kw
    extra = {"constant_values": cval} if mode == "constant" else {}
    padded = np.pad(img, big, mode=NP_PAD[mode], **extra)
    for y in range(h):
        for x in range(w):
            total = 0.0
            for a in range(kh):
                for b in range(kw):
                    total += (
                        weights[a, b] * padded[big + y - a + origin[0], big + x - b + origin[1]]
                    )
            out[y, x] = total
    return out


@st.composite
def kernels(draw, max_side=6):
    kh = draw(st.integers(1, max_side))
    kw = draw(st.integers(1, max_side))
    weights = draw(arrays(np.float64, (kh, kw), elements=st.floats(-4, 4, allow_subnormal=False)))
    origin = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    return Kernel(weights, origin=origin)


@st.composite
def images(draw, max_side=12, channels=None):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    c = channels if channels is not None else draw(st.integers(1, 4))
    return draw(arrays(np.float64, (h, w, c), elements=st.floats(0, 1, allow_subnormal=False)))


# -- golden cases from CONCEPTS.md --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_1d_full_convolution(backend):
    # x = [1, 2, 3, 4] with two zeros each side, w = [5, 6, 7] anchored at its first tap:
    # out[y] = sum_a w[a] x[y - a], i.e. the full convolution.
    x = np.array([[0, 0, 1, 2, 3, 4, 0, 0]], dtype=np.float64)
    k = Kernel([[5, 6, 7]], origin=(0, 0))
    out = convolve(x, k, mode="constant", backend=backend, dtype=np.float64)
    np.testing.assert_allclose(out[0, 2:], [5, 16, 34, 52, 45, 28], atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_1d_same_and_valid(backend):
    x = np.array([[1, 2, 3, 4]], dtype=np.float64)
    w = Kernel([[5, 6, 7]])
    conv = convolve(x, w, mode="constant", backend=backend, dtype=np.float64)[0]
    corr = correlate(x, w, mode="constant", backend=backend, dtype=np.float64)[0]
    np.testing.assert_allclose(conv, [16, 34, 52, 45], atol=1e-9)  # same = full[1:5]
    np.testing.assert_allclose(corr[1:3], [38, 56], atol=1e-9)  # valid correlation
    np.testing.assert_allclose(conv[1:3], [34, 52], atol=1e-9)  # valid convolution


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_273_kernel_impulse_and_flat(backend):
    ints = np.array(
        [[1, 4, 7, 4, 1], [4, 16, 26, 16, 4], [7, 26, 41, 26, 7], [4, 16, 26, 16, 4],
         [1, 4, 7, 4, 1]], dtype=np.float64,
    )  # fmt: skip
    k = Kernel(ints / 273)
    assert ints.sum() == 273
    assert not k.separable and k.rank == 3
    impulse = np.zeros((9, 9))
    impulse[4, 4] = 1
    out = convolve(impulse, k, mode="constant", backend=backend, dtype=np.float64)
    np.testing.assert_allclose(out[2:7, 2:7] * 273, ints, atol=1e-9)
    assert out[4, 4] == pytest.approx(41 / 273)
    flat = np.full((6, 7), 0.25)
    np.testing.assert_allclose(convolve(flat, k, backend=backend), 0.25, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_2d_reflect(backend):
    # 2x2 image, 3x3 kernel of 1..9, reflect: the extended image is [[a a b b], ...].
    img = np.array([[1.0, 2.0], [3.0, 4.0]])
    k = Kernel(np.arange(1, 10, dtype=float).reshape(3, 3))
    # correlate at (0, 0): window rows (-1, 0, 1) -> (0, 0, 1), cols -> (0, 0, 1)
    window = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 4]], dtype=float)
    expected = float((window * k.weights).sum())
    got = correlate(img, k, backend=backend, dtype=np.float64)[0, 0]
    assert got == pytest.approx(expected)
    assert expected == 1 + 2 + 6 + 4 + 5 + 12 + 21 + 24 + 36 == 111


# -- definitions ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (2, 3), (4, 4), (5, 3)])
def test_impulse_response(backend, shape):
    rng = np.random.default_rng(sum(shape))
    weights = rng.integers(-9, 10, size=shape).astype(float)
    for origin in [(0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, shape[1] // 2)]:
        k = Kernel(weights, origin=origin)
        impulse = np.zeros((11, 11))
        impulse[5, 5] = 1
        conv = convolve(impulse, k, mode="constant", backend=backend, dtype=np.float64)
        corr = correlate(impulse, k, mode="constant", backend=backend, dtype=np.float64)
        r0, c0 = 5 - origin[0], 5 - origin[1]
        # convolution reproduces the kernel as written, its origin on the impulse
        np.testing.assert_allclose(conv[r0 : r0 + shape[0], c0 : c0 + shape[1]], weights, atol=1e-9)
        assert np.abs(conv).sum() == pytest.approx(np.abs(weights).sum())
        # correlation reproduces it rotated by 180 degrees
        r1, c1 = 5 - (shape[0] - 1 - origin[0]), 5 - (shape[1] - 1 - origin[1])
        np.testing.assert_allclose(
            corr[r1 : r1 + shape[0], c1 : c1 + shape[1]], weights[::-1, ::-1], atol=1e-9
        )


@settings(max_examples=40, deadline=None)
@given(img=images(max_side=7, channels=1), k=kernels(max_side=4), mode=st.sampled_from(MODES))
def test_convolution_matches_its_definition(img, k, mode):
    expected = reference_convolve(img[:, :, 0], k.weights, k.origin, mode, cval=0.3)
    for backend in BACKENDS:
        got = convolve(img[:, :, 0], k, mode=mode, cval=0.3, backend=backend, dtype=np.float64)
        np.testing.assert_allclose(got, expected, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(img=images(), k=kernels(), mode=st.sampled_from(MODES))
def test_correlation_matches_reference(img, k, mode):
    expected = reference_correlate(img, k.weights, k.origin, mode, cval=0.7)
    for backend in BACKENDS:
        got = correlate(img, k, mode=mode, cval=0.7, backend=backend, dtype=np.float64)
        np.testing.assert_allclose(got, expected, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(img=images(), k=kernels(), mode=st.sampled_from(MODES), backend=st.sampled_from(BACKENDS))
def test_convolve_is_correlate_with_rotated_kernel(img, k, mode, backend):
    conv = convolve(img, k, mode=mode, backend=backend, dtype=np.float64)
    corr = correlate(img, k.rotated(), mode=mode, backend=backend, dtype=np.float64)
    np.testing.assert_allclose(conv, corr, atol=1e-9)
    # and against the independent reference, whose rotation is done by hand here
    ref = reference_correlate(
        img,
        k.weights[::-1, ::-1],
        (k.shape[0] - 1 - k.origin[0], k.shape[1] - 1 - k.origin[1]),
        mode,
    )
    np.testing.assert_allclose(conv, ref, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(img=images(channels=1), k=kernels(), backend=st.sampled_from(BACKENDS))
def test_symmetric_kernels_give_equal_and_antisymmetric_negated(img, k, backend):
    centred = Kernel(np.pad(k.weights, 1), origin=(k.origin[0] + 1, k.origin[1] + 1))
    # make odd-sized and centred: embed into a (2n+1) square around the origin
    n = max(k.shape) + 1
    w = np.zeros((2 * n + 1, 2 * n + 1))
    w[
        n - k.origin[0] : n - k.origin[0] + k.shape[0],
        n - k.origin[1] : n - k.origin[1] + k.shape[1],
    ] = k.weights
    sym = Kernel(w + w[::-1, ::-1])
    anti = Kernel(w - w[::-1, ::-1])
    assert centred.shape == (k.shape[0] + 2, k.shape[1] + 2)
    assert sym.symmetry.value == "symmetric"
    assert anti.symmetry.value in ("antisymmetric", "symmetric")  # all-zero counts as both
    for mode in MODES:
        a = convolve(img, sym, mode=mode, backend=backend, dtype=np.float64)
        b = correlate(img, sym, mode=mode, backend=backend, dtype=np.float64)
        np.testing.assert_allclose(a, b, atol=1e-9)
        c = convolve(img, anti, mode=mode, backend=backend, dtype=np.float64)
        d = correlate(img, anti, mode=mode, backend=backend, dtype=np.float64)
        np.testing.assert_allclose(c, -d, atol=1e-9)


# -- algebra --------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    img=images(channels=2),
    k=kernels(),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
    mode=st.sampled_from(MODES),
    backend=st.sampled_from(BACKENDS),
)
def test_linearity(img, k, a, b, mode, backend):
    other = np.roll(img[::-1], 1, axis=1) ** 2
    left = convolve(a * img + b * other, k, mode=mode, backend=backend, dtype=np.float64)
    right = a * convolve(img, k, mode=mode, backend=backend, dtype=np.float64) + b * convolve(
        other, k, mode=mode, backend=backend, dtype=np.float64
    )
    np.testing.assert_allclose(left, right, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(
    img=images(channels=1),
    k=kernels(),
    dy=st.integers(-5, 5),
    dx=st.integers(-5, 5),
    backend=st.sampled_from(BACKENDS),
)
def test_shift_equivariance_under_wrap(img, k, dy, dx, backend):
    shifted = np.roll(img, (dy, dx), axis=(0, 1))
    a = convolve(shifted, k, mode="wrap", backend=backend, dtype=np.float64)
    b = np.roll(
        convolve(img, k, mode="wrap", backend=backend, dtype=np.float64), (dy, dx), axis=(0, 1)
    )
    np.testing.assert_allclose(a, b, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(img=images(channels=1), k1=kernels(4), k2=kernels(4), backend=st.sampled_from(BACKENDS))
def test_associativity_under_wrap(img, k1, k2, backend):
    composed = Kernel(
        scipy.signal.convolve2d(k1.weights, k2.weights, mode="full"),
        origin=(k1.origin[0] + k2.origin[0], k1.origin[1] + k2.origin[1]),
    )
    seq = convolve(
        convolve(img, k1, mode="wrap", backend=backend, dtype=np.float64),
        k2,
        mode="wrap",
        backend=backend,
        dtype=np.float64,
    )
    once = convolve(img, composed, mode="wrap", backend=backend, dtype=np.float64)
    np.testing.assert_allclose(seq, once, atol=1e-8)


def test_correlation_is_not_associative_in_general():
    # (I corr A) corr B is I correlated with the full *convolution* of A and B, not with
    # the correlation of the kernels: correlating kernels does not compose.
    rng = np.random.default_rng(3)
    img = rng.random((9, 9))
    k1 = Kernel(rng.random((3, 3)))
    k2 = Kernel(rng.random((3, 3)))
    seq = correlate(
        correlate(img, k1, mode="wrap", dtype=np.float64), k2, mode="wrap", dtype=np.float64
    )
    by_correlation = Kernel(scipy.signal.correlate2d(k1.weights, k2.weights, mode="full"))
    assert np.abs(seq - correlate(img, by_correlation, mode="wrap")).max() > 1e-2
    by_convolution = Kernel(scipy.signal.convolve2d(k1.weights, k2.weights, mode="full"))
    np.testing.assert_allclose(
        seq, correlate(img, by_convolution, mode="wrap", dtype=np.float64), atol=1e-9
    )


@settings(max_examples=30, deadline=None)
@given(
    img=images(),
    mode=st.sampled_from(MODES),
    backend=st.sampled_from(BACKENDS),
    side=st.integers(0, 3),
)
def test_identity_kernel(img, mode, backend, side):
    w = np.zeros((2 * side + 1, 2 * side + 1))
    w[side, side] = 1
    out = convolve(img, Kernel(w), mode=mode, backend=backend, dtype=np.float64)
    np.testing.assert_allclose(out, img, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    k=kernels(),
    value=st.floats(0, 1),
    mode=st.sampled_from(["reflect", "nearest", "mirror", "wrap"]),
    backend=st.sampled_from(BACKENDS),
)
def test_normalized_kernel_keeps_flat_image_flat(k, value, mode, backend):
    weights = np.abs(k.weights) + 0.1
    kn = Kernel(weights, origin=k.origin).normalized()
    flat = np.full((8, 9, 3), value)
    out = convolve(flat, kn, mode=mode, backend=backend)
    np.testing.assert_allclose(out, value, atol=1e-5)


# -- backend agreement matrix --------------------------------------------------------------


KERNEL_SHAPES = [(1, 1), (2, 2), (3, 3), (4, 5), (7, 7), (1, 9), (13, 2), (19, 23)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kshape", KERNEL_SHAPES)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_backends_agree_float32(mode, kshape, channels):
    rng = np.random.default_rng(hash((mode, kshape, channels)) % 2**32)
    img = rng.random((17, 15, channels), dtype=np.float32)  # 19x23 kernel: larger than image
    for separable in (False, True):
        if separable:
            weights = np.outer(rng.standard_normal(kshape[0]), rng.standard_normal(kshape[1]))
        else:
            weights = rng.standard_normal(kshape)
        weights /= np.abs(weights).sum()
        origin = (int(rng.integers(kshape[0])), int(rng.integers(kshape[1])))
        k = Kernel(weights, origin=origin)
        assert k.separable == (separable or min(kshape) == 1)
        ref = reference_correlate(img, k.weights, k.origin, mode, cval=0.5)
        for op in ("convolve", "correlate"):
            outs = {
                b: filter_array(img, k, op=op, mode=mode, cval=0.5, backend=b)[0]
                for b in ("direct", "fft", "auto")
            }
            assert all(o.dtype == np.float32 and o.shape == img.shape for o in outs.values())
            assert np.abs(outs["direct"] - outs["fft"]).max() <= 1e-4
            assert np.abs(outs["auto"] - outs["direct"]).max() <= 1e-4
            if op == "correlate":
                assert np.abs(outs["direct"] - ref).max() <= 1e-5


def test_backends_agree_on_a_large_image_with_threads():
    rng = np.random.default_rng(7)
    img = rng.random((301, 257, 3), dtype=np.float32)
    for k in (Kernel(rng.standard_normal((9, 9)) / 20), Kernel(np.outer(*rng.random((2, 15))))):
        a = direct.correlate(img, k, "reflect", 0.0, threads=2)
        b = direct.correlate(img, k, "reflect", 0.0, threads=1)
        c = fft.correlate(img, k, "reflect", 0.0)
        assert np.array_equal(a, b)  # row bands change nothing
        assert np.abs(a - c).max() <= 1e-4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_threaded_filtering_works_in_a_forked_child():
    # The thread pool exists in the parent; a forked child (a process-pool worker)
    # inherits the pool object without its threads and must not wait on them forever.
    rng = np.random.default_rng(8)
    img = rng.random((301, 257, 3), dtype=np.float32)
    k = Kernel(rng.standard_normal((9, 9)) / 20)
    expected = direct.correlate(img, k, "reflect", 0.0, threads=2)  # the pool now exists
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: filter on two threads, report success through the pipe
        try:
            out = direct.correlate(img, k, "reflect", 0.0, threads=2)
            os.write(write_fd, b"1" if np.array_equal(out, expected) else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    deadline = time.monotonic() + 60
    answer = b""
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            answer = os.read(read_fd, 1)
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(read_fd)
    assert answer == b"1", "the forked child hung or computed a different result"


def test_8bit_outputs_within_one_level():
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (64, 80, 3)).astype(np.float32) / 255
    for k in (Kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]), Kernel(rng.random((6, 5)))):
        k = k.normalized()
        a = np.rint(np.clip(convolve(img, k, backend="direct"), 0, 1) * 255)
        b = np.rint(np.clip(convolve(img, k, backend="fft"), 0, 1) * 255)
        assert np.abs(a - b).max() <= 1


# -- dispatch, dtypes, errors -----------------------------------------------------------------


def test_float64_on_request_and_2d_in_2d_out():
    img = np.linspace(0, 1, 30).reshape(5, 6)
    out = convolve(img, Kernel([[1, 2, 1]]), dtype=np.float64)
    assert out.dtype == np.float64 and out.shape == (5, 6)
    assert convolve(img, Kernel([[1]])).dtype == np.float32


def test_auto_picks_direct_for_small_and_fft_for_large_kernels():
    small = plan_filter((3000, 4000, 3), Kernel(np.ones((3, 3))))
    assert small.backend == "direct" and small.method == "separable"
    sharpen = plan_filter((3000, 4000, 3), Kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]))
    assert sharpen.backend == "direct" and sharpen.method == "2d"
    big = plan_filter((3000, 4000, 3), Kernel(np.random.default_rng(0).random((51, 51))))
    assert big.backend == "fft"
    assert "fft" in big.reason and "direct" in big.reason


def test_fft_refuses_nan_and_auto_falls_back_to_direct():
    img = np.zeros((64, 64))
    img[20, 20] = np.nan
    k = Kernel(np.random.default_rng(0).random((61, 61)))
    assert plan_filter(img.shape, k).backend == "fft"  # without the NaN, auto takes fft
    with pytest.raises(FilterError, match="NaN or infinite"):
        convolve(img, k, backend="fft")
    out, plan = filter_array(img, k, backend="auto")
    assert plan.backend == "direct" and "NaN" in plan.reason
    assert np.isnan(out[20, 20]) and not np.isnan(out[63, 63])  # NaN stays local


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"mode": "bogus"},
            "boundary mode must be one of reflect, constant, nearest, mirror, wrap",
        ),
        ({"backend": "gpu"}, "backend must be one of auto, direct, fft, got 'gpu'"),
        ({"dtype": np.int32}, "dtype must be float32 or float64, got int32"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(UsageError, match=message):
        convolve(np.zeros((3, 3)), Kernel([[1]]), **kwargs)


@pytest.mark.parametrize(
    "alias,primary",
    [
        ("symmetric", "reflect"),
        ("zero", "constant"),
        ("edge", "nearest"),
        ("replicate", "nearest"),
        ("reflect101", "mirror"),
        ("periodic", "wrap"),
        ("tile", "wrap"),
        ("REFLECT", "reflect"),
        ("BORDER_REFLECT", "reflect"),
        ("cv2.BORDER_REFLECT_101", "mirror"),
        ("border_default", "mirror"),
        ("BORDER_REPLICATE", "nearest"),
        ("BORDER_WRAP", "wrap"),
        ("BORDER_CONSTANT", "constant"),
    ],
)
def test_mode_aliases(alias, primary):
    rng = np.random.default_rng(0)
    img = rng.random((6, 7))
    k = Kernel(rng.random((3, 4)))
    np.testing.assert_array_equal(convolve(img, k, mode=alias), convolve(img, k, mode=primary))


def test_opencv_border_names_compute_what_opencv_computes():
    cv2 = pytest.importorskip("cv2")
    from convcli.backends.borders import OPENCV_MODES

    rng = np.random.default_rng(3)
    img = rng.random((9, 11)).astype(np.float32)
    k = Kernel(rng.random((5, 3)))  # odd: OpenCV's anchor is the centre, as convcli's origin
    for name, mode in OPENCV_MODES.items():
        flag = getattr(cv2, name.upper())
        ours = correlate(img, k, mode=name.upper(), dtype=np.float64)
        # OpenCV's own border rule (filter2D refuses BORDER_WRAP, so pad, then crop)
        padded = cv2.copyMakeBorder(img.astype(np.float64), 2, 2, 1, 1, flag, value=0)
        theirs = cv2.filter2D(padded, -1, k.weights, borderType=cv2.BORDER_CONSTANT)[2:-2, 1:-1]
        np.testing.assert_allclose(ours, theirs, atol=1e-12, err_msg=f"{name} = {mode}")


def test_bad_images():
    with pytest.raises(FilterError, match="image must be 2-D"):
        convolve(np.zeros(5), Kernel([[1]]))
    with pytest.raises(FilterError, match="image is empty"):
        convolve(np.zeros((0, 4)), Kernel([[1]]))


def test_native_rejects_inconsistent_buffers():
    img = np.zeros((4, 5, 1), np.float32)
    out = np.empty_like(img)
    k = np.ones(9, np.float32)
    rows = np.arange(-1, 5, dtype=np.int64).clip(0, 3)
    cols = np.arange(-1, 6, dtype=np.int64).clip(0, 4)
    _native.correlate2d(img, out, 4, 5, 1, k, 3, 3, rows, cols, 1, 0.0, 0, 4)
    assert np.all(out == 0)
    with pytest.raises(ValueError, match="does not match H\\*W\\*C"):
        _native.correlate2d(img, out, 5, 5, 1, k, 3, 3, rows, cols, 1, 0.0, 0, 4)
    with pytest.raises(ValueError, match="kernel buffer"):
        _native.correlate2d(img, out, 4, 5, 1, k[:8], 3, 3, rows, cols, 1, 0.0, 0, 4)
    with pytest.raises(ValueError, match="row index map out of range"):
        _native.correlate2d(img, out, 4, 5, 1, k, 3, 3, rows + 5, cols, 1, 0.0, 0, 4)
    with pytest.raises(ValueError, match="row range"):
        _native.correlate2d(img, out, 4, 5, 1, k, 3, 3, rows, cols, 1, 0.0, 0, 9)
    with pytest.raises(ValueError, match="identity inside"):
        _native.correlate2d(img, out, 4, 5, 1, k, 3, 3, rows, cols, 0, 0.0, 0, 4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("taps", [2, 3, 5, 8, 13])
def test_symmetric_separable_fast_path_matches_reference(mode, taps):
    # The direct backend pairs mirror taps of equal weight; cover odd/even lengths, borders
    # (constant cval rows and columns mixed with real ones) and a non-centred origin.
    rng = np.random.default_rng(taps)
    g = rng.random(taps)
    g = g + g[::-1]
    h = np.array([1.0, 0.0, 1.0]) if taps % 2 else np.array([2.0, 2.0])
    img = rng.random((23, 9, 2))
    for weights in (np.outer(g, g), np.outer(g, h), np.outer(h, g)):
        for origin in ((weights.shape[0] // 2, weights.shape[1] // 2), (0, weights.shape[1] - 1)):
            k = Kernel(weights, origin=origin)
            assert k.separable
            ref = reference_correlate(img, k.weights, k.origin, mode, cval=0.6)
            for dtype in (np.float32, np.float64):
                got = correlate(img, k, mode=mode, cval=0.6, backend="direct", dtype=dtype)
                tol = 1e-6 if dtype == np.float32 else 1e-12
                np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("strips", [1, 2, 3, 5])
def test_fft_strips_match_reference(mode, strips, monkeypatch):
    # The FFT backend cuts the image into strips: strips shorter than the kernel, uneven
    # last strips and every border mode must still be exact.
    monkeypatch.setattr(fft, "MIN_STRIPS", strips)
    rng = np.random.default_rng(strips)
    img = rng.random((23, 11, 2))
    for shape in ((9, 4), (1, 5), (23, 3)):
        k = Kernel(rng.standard_normal(shape), origin=(shape[0] // 3, shape[1] - 1))
        assert -(-23 // fft.strip_plan(23, 11, k.shape)[0]) == strips
        ref = reference_correlate(img, k.weights, k.origin, mode, cval=0.25)
        got = fft.correlate(np.ascontiguousarray(img), k, mode, 0.25, workers=2)
        np.testing.assert_allclose(got, ref, atol=1e-9)


@pytest.mark.parametrize("backend", ["direct", "fft"])
def test_results_do_not_depend_on_the_thread_count(backend):
    # batch workers filter on fewer threads than a single run: the bits must not change
    rng = np.random.default_rng(3)
    img = rng.random((100, 157, 3), dtype=np.float32)  # short: the strip count was per core
    k = Kernel(rng.standard_normal((13, 11)) / 13)
    if backend == "fft":
        outs = [fft.correlate(img, k, "reflect", 0.0, workers=n) for n in (1, 2, 3, 4)]
    else:
        outs = [direct.correlate(img, k, "reflect", 0.0, threads=n) for n in (1, 2, 3, 4)]
    for out in outs[1:]:
        assert np.array_equal(out, outs[0])


def test_huge_finite_values_are_not_mistaken_for_nan():
    from convcli.filtering import _all_finite

    img = np.full((40, 40), 3e38, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(img.sum())  # the quick test overflows...
    assert _all_finite(img)  # ...and the exact one settles it
    img[3, 4] = np.nan
    assert not _all_finite(img)
    img[3, 4] = -np.inf
    assert not _all_finite(img)


def test_direct_band_computes_exactly_those_rows():
    from convcli.backends import direct

    rng = np.random.default_rng(11)
    image = rng.uniform(0, 1, (23, 9, 2)).astype(np.float32)
    shifted = Kernel(rng.normal(size=(5, 3)), origin=(4, 0))
    for kernel in (shifted, builtin_kernel("gaussian", sigma=1)):
        whole = direct.correlate(image, kernel, "mirror", 0.0)
        for band in ((0, 23), (3, 4), (7, 19), (22, 23)):
            part = direct.correlate(image, kernel, "mirror", 0.0, band=band, threads=2)
            np.testing.assert_array_equal(part[band[0] : band[1]], whole[band[0] : band[1]])
    with pytest.raises(ValueError, match="not within"):
        direct.correlate(image, kernel, "mirror", 0.0, band=(5, 24))


# -- alpha: transparent where the filtered alpha rounds to 0 ----------------------------------


@st.composite
def cutouts(draw):
    """Stored samples with alpha, as a cut-out photo has them: random colour everywhere (also
    under alpha 0), a fully transparent rectangle, a ring of small alphas (1 to 4 steps)
    around it, and the rest opaque or random."""
    depth = draw(st.sampled_from(("8", "16")))
    bands = draw(st.sampled_from(("LA", "RGBA")))
    h, w = draw(st.integers(2, 20)), draw(st.integers(2, 20))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = 255 if depth == "8" else 65535
    samples = rng.integers(0, top + 1, (h, w, len(bands)))
    y0, y1 = sorted(draw(st.tuples(st.integers(0, h), st.integers(0, h))))
    x0, x1 = sorted(draw(st.tuples(st.integers(0, w), st.integers(0, w))))
    ring = draw(st.integers(1, 2))
    alpha = samples[..., -1]
    if draw(st.booleans()):
        alpha[:] = top
    edge = (slice(max(0, y0 - ring), y1 + ring), slice(max(0, x0 - ring), x1 + ring))
    alpha[edge] = rng.integers(1, 5, (h, w))[edge]
    alpha[y0:y1, x0:x1] = 0
    dtype = np.uint8 if depth == "8" else np.uint16
    return Samples(samples.astype(dtype), bands, depth)


def _over_black(written: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Written colour composited over black through ``alpha`` (written samples), in levels
    times the depth's top level (exact integers; over white the differences are the same)."""
    return written[..., :-1] * alpha[..., np.newaxis]


@settings(max_examples=150, deadline=None)
@given(
    stored=cutouts(),
    spec=st.sampled_from(("gaussian:sigma=1.5", "box:size=2", "sharpen")),
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from(("float32", "float64")),
)
def test_direct_and_fft_agree_as_written_with_transparent_regions(stored, spec, mode, dtype):
    top = 255 if stored.depth == "8" else 65535
    options = FilterOptions(mode=mode, cval=0.5, dtype=dtype)
    a, b = (
        filter_samples(stored.samples, [load_kernel(spec)], replace(options, backend=backend),
                       bands=stored.bands).astype(np.int64)
        for backend in ("direct", "fft")
    )  # fmt: skip
    # transparent where written as 0: colour 0 too, on both backends (the FFT's float noise
    # under alpha 0 used to be divided into colours of 0..255)
    for out in (a, b):
        assert (out[out[..., -1] == 0] == 0).all()
    # alpha within one level, and the colour as far as it shows through the alpha both
    # have, composited: c a over black, c a + 1 - a over white (the same difference)
    assert np.abs(a[..., -1] - b[..., -1]).max() <= 1
    shared = np.minimum(a[..., -1], b[..., -1])
    seen = np.abs(_over_black(a, shared) - _over_black(b, shared))
    assert seen.max() <= top  # one level
    # through each one's own alpha: one level more where colour and alpha both sit on a
    # rounding tie (a 2x2 box makes alpha ties)
    own = np.abs(_over_black(a, a[..., -1]) - _over_black(b, b[..., -1]))
    assert own.max() <= 2 * top
    assert written_levels(a, b, stored.depth, alpha=True)[0] <= LEVEL_TOLERANCE  # --verify
    if stored.depth == "8":  # every sample where both are visible (in 16-bit the straight
        # colour under an alpha of a few steps is float noise divided by 1e-5: unseen)
        both = (a[..., -1] > 0) & (b[..., -1] > 0)
        assert np.abs(a[both] - b[both]).max(initial=0) <= 1


def _golden_sharpen_row() -> np.ndarray:
    """A 1x3 float RGBA row (constant border, cval 0) whose middle pixel gets a tiny alpha
    from sharpen, exactly: 5 * 1/4 - 1 - (1/4 - 2**-20) = 2**-20 (every partial sum is a
    float32, so the direct backend computes it exactly, in any order)."""
    row = np.zeros((1, 3, 4), np.float32)
    row[0, 0] = [0, 0, 0, 1.0]  # opaque black
    row[0, 1] = [1, 0, 0, 0.25]  # red, a quarter opaque
    row[0, 2] = [0, 0, 0, 0.25 - 2**-20]
    return row


@pytest.mark.parametrize("depth", ["8", "16", "float"])
def test_golden_sharpen_gives_a_tiny_alpha_and_the_pixel_is_transparent(depth):
    row = _golden_sharpen_row()
    k = builtin_kernel("sharpen")  # [[0,-1,0],[-1,5,-1],[0,-1,0]]
    # the premise, by hand: premultiplied red 5 * 1/4 * 1 = 1.25 over alpha 2**-20 is a
    # straight red of 1310720 (it was written as 255 or 65535 under an alpha rounding to 0,
    # and as 1.3e6 in float output)
    pre = row.copy()
    pre[..., :3] *= pre[..., 3:]
    raw = correlate(pre, k, mode="constant", backend="direct")
    assert raw[0, 1, 3] == np.float32(2**-20) and raw[0, 1, 0] == np.float32(1.25)
    options = FilterOptions(backend="direct", mode="constant", depth=depth)
    whole, _ = filter_image(Image(row, "RGBA", "float"), [k], options)
    strips = filter_samples(row, [k], options)
    assert whole.pixels[0, 1].tolist() == [0, 0, 0, 0]
    assert strips[0, 1].tolist() == [0, 0, 0, 0]
    # its opaque neighbour keeps its sharpened colour (-0.25, clipped unless float) and alpha
    assert strips[0, 0, 3] == {"8": 255, "16": 65535, "float": 1.0}[depth]
    assert strips[0, 0, 0] == (np.float32(-0.25) if depth == "float" else 0)
