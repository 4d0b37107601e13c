"""The strip engine and file-to-file path: the same bits as the whole-image path, whatever
the strip height; bounded failures; the PNG encoder."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import scipy.fft
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from convcli import load_kernel, native  # noqa: E402
from convcli.backends import direct as direct_backend
from convcli.backends.fft import next_fast_len
from convcli.cli import main
from convcli.errors import ImageReadError, ImageWriteError
from convcli.image_io import (
    SAMPLE_TYPES,
    Image,
    ImageMeta,
    Samples,
    read_image,
    read_samples,
    to_depth,
    unit_float,
    write_image,
)
from convcli.kernels import Kernel, builtin_kernel
from convcli.pipeline.engine import Stream, filter_samples, stream_samples
from convcli.pipeline.files import filter_file
from convcli.pipeline.strips import chain_reach, kernel_reach, strip_windows, window_rows
from convcli.png_codec import PngWriter, encode_png
from convcli.process import FilterOptions, edge_image, filter_image

#: Tests of what only the C extension does (fused strips, PNG read row by row, its
#: messages); the NumPy fallback (CONVCLI_NATIVE=0, no compiler) decodes PNGs whole.
needs_native = pytest.mark.skipif(not native.AVAILABLE, reason="the C extension is not in use")

#: Tests of what only the C extension does (fused strips, PNG read row by row, its
#: messages); the NumPy fallback (CONVCLI_NATIVE=0, no compiler) decodes PNGs whole.
needs_native = pytest.mark.skipif(not native.AVAILABLE, reason="the C extension is not in use")

RNG = np.random.default_rng(20261201)
MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
BANDS = ("L", "LA", "RGB", "RGBA")


def _stored(height: int, width: int, bands: str, depth: str, seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    shape = (height, width, len(bands))
    if depth == "8":
        samples = rng.integers(0, 256, shape).astype(np.uint8)
    elif depth == "16":
        samples = rng.integers(0, 65536, shape).astype(np.uint16)
    else:
        samples = rng.uniform(-0.5, 1.5, shape).astype(np.float32)
    if bands in ("LA", "RGBA") and depth != "float":
        samples[0, 0, -1] = 0  # a transparent pixel, for the un-premultiply rule
    return Samples(samples, bands, depth)  # type: ignore[arg-type]


def _whole(stored: Samples, kernels, options, edge=None):
    """The reference: the whole-image path, rounded to the output depth."""
    image = Image(unit_float(stored.samples, stored.depth), stored.bands, stored.depth)
    if edge is None:
        out, report = filter_image(image, kernels, options)
    else:
        out, report = edge_image(image, edge, options)
    return to_depth(out.pixels, out.depth), report


def _kernel(rng: np.random.Generator, rows: int, cols: int, explicit_origin: bool) -> Kernel:
    weights = rng.normal(size=(rows, cols)) / (rows * cols)
    if explicit_origin:
        origin = (int(rng.integers(0, rows)), int(rng.integers(0, cols)))
        return Kernel(weights, origin=origin)
    return Kernel(weights)


# -- windows ---------------------------------------------------------------------------------


def test_reach_of_correlation_and_convolution():
    k = Kernel(np.ones((5, 3)), origin=(1, 0))
    assert kernel_reach(k, "correlate") == (1, 3)
    assert kernel_reach(k, "convolve") == (3, 1)
    assert chain_reach([k, builtin_kernel("box", size=3)], "correlate") == (2, 4)


@given(
    height=st.integers(1, 60),
    strip=st.integers(1, 70),
    above=st.integers(0, 30),
    below=st.integers(0, 30),
    mode=st.sampled_from(MODES),
)
def test_windows_cover_every_row_once_and_hold_their_halo(height, strip, above, below, mode):
    windows = strip_windows(height, strip, (above, below), mode)
    assert [w.start for w in windows] == list(range(0, height, strip))
    assert windows[-1].stop == height
    for w in windows:
        rows = np.arange(height)[w.rows]
        assert window_rows(w) == rows.size
        # the strip's own rows are in the window where the offset says
        np.testing.assert_array_equal(
            rows[w.offset : w.offset + w.height], np.arange(w.start, w.stop)
        )
        if mode == "wrap":
            assert w.offset == above and rows.size == w.height + above + below
        else:
            assert w.offset >= min(above, w.start)
            assert rows.size - w.offset - w.height >= min(below, height - w.stop)


# -- the same bits as the whole-image path ---------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 23),
    width=st.integers(1, 9),
    bands=st.sampled_from(BANDS),
    depth=st.sampled_from(("8", "16", "float")),
    shapes=st.lists(st.tuples(st.integers(1, 8), st.integers(1, 5)), min_size=1, max_size=3),
    explicit_origin=st.booleans(),
    op=st.sampled_from(("convolve", "correlate")),
    mode=st.sampled_from(MODES),
    strip=st.integers(1, 12),
    alpha=st.sampled_from(("premultiply", "plain")),
    policy=st.sampled_from((None, "clip", "abs", "offset", "rescale")),
    seed=st.integers(0, 2**16),
)
def test_strips_give_the_whole_image_result_bit_for_bit(
    height, width, bands, depth, shapes, explicit_origin, op, mode, strip, alpha, policy, seed
):
    rng = np.random.default_rng(seed)
    stored = _stored(height, width, bands, depth, seed)
    kernels = [_kernel(rng, r, c, explicit_origin) for r, c in shapes]
    if depth == "float" and policy is None:
        policy = "none"
    options = FilterOptions(
        op=op, mode=mode, cval=0.25, backend="direct", alpha=alpha, range_policy=policy
    )
    expected, report = _whole(stored, kernels, options)
    stream = stream_samples(stored, kernels, options, strip_rows=strip)
    got = stream.collect()
    np.testing.assert_array_equal(got.samples, expected)
    assert got.samples.dtype == expected.dtype
    assert stream.report.value_min == report.value_min
    assert stream.report.value_max == report.value_max
    assert stream.report.out_of_range == report.out_of_range
    assert stream.report.samples == report.samples


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", ["convolve", "correlate"])
def test_strip_heights_1_2_kh_minus_1_and_a_prime_on_two_threads(mode, op):
    stored = _stored(41, 17, "RGB", "8", seed=3)
    tall = Kernel(RNG.normal(size=(6, 3)), origin=(4, 2))  # even height, origin off-centre
    kernels = [tall, builtin_kernel("gaussian", sigma=1.2)]
    options = FilterOptions(op=op, mode=mode, backend="direct", range_policy="offset")
    expected, _ = _whole(stored, kernels, options)
    for rows in (1, 2, tall.shape[0] - 1, 7, 41, 1000):
        for workers in (1, 2):
            got = stream_samples(stored, kernels, options, strip_rows=rows, workers=workers)
            np.testing.assert_array_equal(got.collect().samples, expected, err_msg=f"{rows=}")


@pytest.mark.parametrize("mode", MODES)
def test_kernels_taller_than_the_strip_and_the_image(mode):
    stored = _stored(5, 6, "L", "16", seed=4)
    kernels = [Kernel(RNG.normal(size=(13, 3))), Kernel(RNG.normal(size=(9, 1)), origin=(8, 0))]
    options = FilterOptions(mode=mode, backend="direct", range_policy="abs")
    expected, _ = _whole(stored, kernels, options)
    for rows in (1, 2, 3):
        got = stream_samples(stored, kernels, options, strip_rows=rows).collect()
        np.testing.assert_array_equal(got.samples, expected)


@pytest.mark.parametrize("edge", ["sobel", "prewitt", "scharr", "laplacian", "log"])
@pytest.mark.parametrize("bands", ["L", "RGBA"])
def test_edge_operators_match_edge_image(edge, bands):
    stored = _stored(29, 13, bands, "8", seed=5)
    options = FilterOptions(backend="direct")
    expected, _ = _whole(stored, None, options, edge=edge)
    got = stream_samples(stored, None, options, edge=edge, strip_rows=4).collect()
    np.testing.assert_array_equal(got.samples, expected)


@pytest.mark.parametrize("depth", ["8", "16", "float"])
def test_float64_precision_and_output_depths(depth):
    stored = _stored(19, 11, "LA", "8", seed=6)
    options = FilterOptions(backend="direct", dtype="float64", depth=depth, range_policy="rescale")
    expected, _ = _whole(stored, [builtin_kernel("emboss")], options)
    got = stream_samples(stored, [builtin_kernel("emboss")], options, strip_rows=3).collect()
    assert got.samples.dtype == expected.dtype
    np.testing.assert_array_equal(got.samples, expected)


@pytest.mark.parametrize("depth", ["8", "16"])
def test_fft_strips_stay_within_one_level_of_direct(depth):
    stored = _stored(300, 64, "RGB", depth, seed=7)
    kernel = Kernel(RNG.uniform(-1, 1, (31, 31)) / 200)
    direct = stream_samples(stored, [kernel], FilterOptions(backend="direct"), strip_rows=40)
    fft = stream_samples(stored, [kernel], FilterOptions(backend="fft"), strip_rows=40)
    assert fft.program.uses_fft and fft.workers == 1
    a = direct.collect().samples.astype(np.int64)
    b = fft.collect().samples.astype(np.int64)
    assert np.abs(a - b).max() <= 1


def _cutout(height: int, width: int, bands: str, depth: str, seed: int = 0) -> Samples:
    """Samples with alpha as a cut-out has them: a fully transparent rectangle (random colour
    under it), a ring of small alphas around it, and in float a pixel to which sharpen gives
    an alpha of 2**-20 (5 * 1/4 - 1/4 - 1, exactly), which used to be divided into colour."""
    rng = np.random.default_rng(seed)
    shape = (height, width, len(bands))
    top = {"8": 255, "16": 65535, "float": 1.0}[depth]
    if depth == "float":
        samples = rng.uniform(0, 1, shape).astype(np.float32)
        small = rng.uniform(0, 20 / 65535, (height, width))
    else:
        samples = rng.integers(0, top + 1, shape).astype(SAMPLE_TYPES[depth])
        small = rng.integers(1, 5, (height, width))
    alpha = samples[..., -1]
    ring = (slice(height // 4 - 1, 3 * height // 4 + 1), slice(width // 3 - 1, width - 2))
    alpha[ring] = small[ring]
    alpha[height // 4 : 3 * height // 4, width // 3 : width - 3] = 0
    if depth == "float":  # alpha 1/4 between 1 and 1/4 - 2**-20, the rest of the cross 0
        alpha[1:4, 0:3] = 0
        alpha[2, 0:3] = [1.0, 0.25, 0.25 - 2**-20]
    return Samples(samples, bands, depth)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("depth", ["8", "16", "float"])
@pytest.mark.parametrize("bands", ["LA", "RGBA"])
def test_alpha_images_give_the_whole_image_bits_at_strip_heights_1_2_and_primes(
    bands, depth, dtype
):
    stored = _cutout(29, 17, bands, depth, seed=11)
    chains = ([builtin_kernel("sharpen")], [builtin_kernel("gaussian", sigma=1.2)],
              [builtin_kernel("box", size=2), builtin_kernel("sharpen")])  # fmt: skip
    outputs = [(d, p) for d in ("8", "16") for p in ("clip", "rescale", "offset")]
    outputs += [("float", "none"), ("float", "rescale")]
    for kernels in chains:
        for out_depth, policy in outputs:
            options = FilterOptions(backend="direct", mode="constant", dtype=dtype,
                                    depth=out_depth, range_policy=policy)  # fmt: skip
            expected, report = _whole(stored, kernels, options)
            if policy in ("clip", "none"):  # transparent: colour and alpha 0 (the colour
                # is 0 before the range step: offset makes it grey, rescale maps it as any 0)
                assert (expected[expected[..., -1] == 0] == 0).all()
            for rows, workers in ((1, 1), (2, 2), (7, 2), (13, 1)):
                stream = stream_samples(stored, kernels, options, strip_rows=rows,
                                        workers=workers)  # fmt: skip
                got = stream.collect().samples
                message = f"{kernels[-1].name} {out_depth} {policy} {rows=}"
                np.testing.assert_array_equal(got, expected, err_msg=message)
                assert stream.report.value_min == report.value_min
                assert stream.report.value_max == report.value_max


@pytest.mark.parametrize("spec", ["gaussian:sigma=2", "box:size=4"])
def test_rescale_with_alpha_is_not_taken_from_under_transparent_pixels(spec):
    # a blur's straight colour is an average of colours: within [0, 1] wherever the alpha is
    # seen.  Under alpha 0 the FFT left float noise (~1e-9) in colour and alpha, whose
    # quotients (-3.9e6..2e6 on a cut-out photo) became rescale's bounds
    stored = _cutout(40, 50, "RGBA", "8", seed=12)
    kernel = [load_kernel(spec)]
    results, bounds = {}, {}
    for backend in ("direct", "fft"):
        options = FilterOptions(backend=backend, range_policy="rescale")
        stream = stream_samples(stored, kernel, options)
        results[backend] = stream.collect().samples.astype(np.int64)
        bounds[backend] = (stream.report.value_min, stream.report.value_max)
        assert -1e-4 <= bounds[backend][0] and bounds[backend][1] <= 1 + 1e-4
        floats = stream_samples(stored, kernel, FilterOptions(backend=backend, depth="float"))
        colour = floats.collect().samples[..., :3]
        assert np.abs(colour).max() <= 1 + 1e-4
    # (the straight colour under an alpha of half a step is float noise times up to 510)
    np.testing.assert_allclose(bounds["fft"], bounds["direct"], atol=1e-4)
    a, b = results["direct"], results["fft"]
    assert np.abs(a[..., 3] - b[..., 3]).max() <= 1
    both = (a[..., 3] > 0) & (b[..., 3] > 0)
    assert np.abs(a[both] - b[both]).max() <= 1
    assert a[both][:, :3].max() == 255  # the largest colour seen is stretched to white


def test_nan_and_inf_are_refused_by_default_or_replaced_by_zero():
    from convcli.errors import FilterError

    samples = RNG.uniform(0, 1, (40, 30, 1)).astype(np.float32)
    samples[5, 5], samples[7, 3], samples[9, 9] = np.nan, np.inf, -np.inf
    stored = Samples(samples, "L", "float")
    box = builtin_kernel("box")
    message = "3 of the image's samples are NaN or infinite; --nan zero replaces them by 0"
    with pytest.raises(FilterError, match=message):
        stream_samples(stored, [box], FilterOptions())
    image = Image(samples, "L", "float")
    with pytest.raises(FilterError, match=message):
        filter_image(image, [box], FilterOptions())
    for backend in ("direct", "fft"):  # replaced by 0, the FFT backend may run too
        options = FilterOptions(nonfinite="zero", backend=backend, range_policy="none")
        got = stream_samples(stored, [box], options, strip_rows=7).collect().samples
        expected, _ = filter_image(image, [box], options)
        assert np.all(np.isfinite(got))
        if backend == "direct":
            np.testing.assert_array_equal(got, expected.pixels)
        clean = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        ref, _ = filter_image(Image(clean, "L", "float"), [box], FilterOptions(backend="direct",
                              range_policy="none"))  # fmt: skip
        np.testing.assert_allclose(got, ref.pixels, atol=1e-6)


def test_cli_nan_policy(tmp_path):
    import tifffile

    values = np.ones((8, 9), np.float32)
    values[2, 2] = np.nan
    tifffile.imwrite(tmp_path / "f.tif", values)
    runner = CliRunner()
    result = runner.invoke(main, ["blur", str(tmp_path / "f.tif"), "-o", str(tmp_path / "o.tif")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {tmp_path / 'f.tif'}: 1 of the image's samples are NaN or infinite; --nan zero "
        "replaces them by 0"
    )
    assert not (tmp_path / "o.tif").exists()
    result = runner.invoke(
        main, ["blur", str(tmp_path / "f.tif"), "-o", str(tmp_path / "o.tif"), "--nan", "zero"]
    )
    assert result.exit_code == 0, result.output
    with read_samples(tmp_path / "o.tif") as out:
        assert np.all(np.isfinite(out.samples[0:8]))


def test_filter_samples_takes_plain_arrays():
    img = RNG.integers(0, 256, (20, 30)).astype(np.uint8)
    out = filter_samples(img, [builtin_kernel("sharpen")])
    expected, _ = _whole(
        Samples(img[:, :, None], "L", "8"), [builtin_kernel("sharpen")], FilterOptions()
    )
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(Exception, match="uint8, uint16 or float32"):
        filter_samples(img.astype(np.int32), [builtin_kernel("box")])


# -- the fused path: stored samples straight into the kernels, rounding in the store -------


def _general(stream: Stream) -> Stream:
    """The same stream on the general steps (unit_float, kernels, range, to_depth)."""
    stream.fused = False
    return stream


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 30),
    width=st.sampled_from((1, 2, 3, 7, 16, 33, 342, 350, 420)),  # 342+ RGB: rows over 1024
    bands=st.sampled_from(("L", "RGB")),
    depth=st.sampled_from(("8", "16")),
    out_depth=st.sampled_from(("8", "16")),
    shapes=st.lists(
        st.tuples(st.integers(1, 7), st.integers(1, 6), st.booleans()), min_size=1, max_size=3
    ),
    explicit_origin=st.booleans(),
    op=st.sampled_from(("convolve", "correlate")),
    mode=st.sampled_from(MODES),
    cval=st.sampled_from((0.0, 0.25, -0.5, 1.5)),
    strip=st.integers(1, 40),
    workers=st.sampled_from((1, 2)),
    seed=st.integers(0, 2**16),
)
@needs_native
def test_fused_path_gives_the_general_steps_bits_and_report(
    height, width, bands, depth, out_depth, shapes, explicit_origin, op, mode, cval, strip,
    workers, seed,
):  # fmt: skip
    rng = np.random.default_rng(seed)
    stored = _stored(height, width, bands, depth, seed)
    kernels = []
    for r, c, separable in shapes:
        if separable:  # rank 1: the two-pass C path
            weights = np.outer(rng.normal(size=r), rng.normal(size=c)) / (r * c) ** 0.5
            kernels.append(Kernel(weights))
        else:
            kernels.append(_kernel(rng, r, c, explicit_origin))
    options = FilterOptions(
        op=op, mode=mode, cval=cval, backend="direct", depth=out_depth, range_policy="clip"
    )
    fast = stream_samples(stored, kernels, options, strip_rows=strip, workers=workers)
    assert fast.fused
    slow = _general(stream_samples(stored, kernels, options, strip_rows=strip, workers=workers))
    got, expected = fast.collect().samples, slow.collect().samples
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype == (np.uint8 if out_depth == "8" else np.uint16)
    for name in ("value_min", "value_max", "out_of_range", "samples"):
        assert getattr(fast.report, name) == getattr(slow.report, name), name
    # and strip by strip, as a file writer takes them
    strips = list(stream_samples(stored, kernels, options, strip_rows=strip, workers=workers))
    np.testing.assert_array_equal(np.concatenate(strips), expected)


@needs_native
def test_fused_path_is_taken_only_where_it_gives_the_same_bits():
    def fused(bands="RGB", stored_depth="8", **options):
        stored = _stored(6, 5, bands, stored_depth)
        options.setdefault("backend", "direct")
        return stream_samples(stored, [builtin_kernel("sharpen")], FilterOptions(**options)).fused

    assert fused() and fused(stored_depth="16") and fused(bands="L", depth="16")
    assert not fused(bands="RGBA")  # premultiplied alpha
    assert not fused(stored_depth="float")
    assert not fused(depth="float")
    assert not fused(range_policy="abs")
    assert not fused(dtype="float64")
    assert not fused(backend="fft")


@needs_native
def test_fused_conversion_is_unit_float_and_rounding_is_to_depth_at_every_tie():
    identity = Kernel([[1.0]])
    for dtype, depth, top, ulps in ((np.uint8, "8", 255, 48), (np.uint16, "16", 65535, 3)):
        every = np.arange(top + 1, dtype=dtype).reshape(1, -1, 1)
        as_float, _ = direct_backend.correlate_samples(every, identity, "reflect", 0.0)
        np.testing.assert_array_equal(as_float, unit_float(every, depth))
        # floats on and around every half step (k + 0.5) / top, where float and double
        # products can round differently, and beyond the range
        ties = ((np.arange(top + 1) + 0.5) / top).astype(np.float32).view(np.int32)
        near = (ties[:, None] + np.arange(-ulps, ulps + 1)).reshape(-1).view(np.float32)
        special = np.array([-np.inf, -1.0, -0.0, 0.0, 1e-30, 1.0, 1.5, 1e30, np.inf], np.float32)
        values = np.concatenate([near, special, RNG.uniform(-0.1, 1.1, 4096).astype(np.float32)])
        half = 0.5 / top
        rounded, (lo, hi, below, above, nan) = direct_backend.correlate_samples(
            values.reshape(1, -1, 1), identity, "reflect", 0.0, out_dtype=dtype,
            outside=(-half, 1 + half),
        )  # fmt: skip
        np.testing.assert_array_equal(rounded.reshape(-1), to_depth(values, depth))
        assert (lo, hi, nan) == (float(values.min()), float(values.max()), 0)
        assert below == np.count_nonzero(values.astype(np.float64) < -half)
        assert above == np.count_nonzero(values.astype(np.float64) > 1 + half)
    with_nan = np.array([[[0.5], [np.nan], [2.0]]], np.float32)
    rounded, (lo, hi, below, above, nan) = direct_backend.correlate_samples(
        with_nan, identity, "reflect", 0.0, out_dtype=np.uint8, outside=(0.0, 1.0)
    )
    assert rounded.reshape(-1).tolist() == [128, 0, 255] and (nan, above, below) == (1, 1, 0)


@needs_native
def test_correlate_samples_refuses_what_it_cannot_read_or_write():
    k = builtin_kernel("box")
    img = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="C-contiguous"):
        direct_backend.correlate_samples(img[:, ::2], k, "reflect", 0.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        direct_backend.correlate_samples(img.astype(np.int16), k, "reflect", 0.0)
    with pytest.raises(ValueError, match="band"):
        direct_backend.correlate_samples(img, k, "reflect", 0.0, band=(2, 5))
    with pytest.raises(ValueError, match="out must be"):
        direct_backend.correlate_samples(img, k, "reflect", 0.0, out=np.empty((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="out_dtype"):
        direct_backend.correlate_samples(img, k, "reflect", 0.0, out_dtype=np.float64)
    out, _ = direct_backend.correlate_samples(
        img, k, "reflect", 0.0, band=(1, 3), out_dtype=np.uint16
    )
    assert out.shape == (2, 5, 3) and out.dtype == np.uint16


# -- file to file ----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp", ".bmp"])
def test_filter_file_writes_the_same_bytes_as_read_filter_write(tmp_path, ext):
    src = tmp_path / "in.png"
    PILImage.fromarray(RNG.integers(0, 256, (70, 45, 3)).astype(np.uint8)).save(src)
    kernels = [builtin_kernel("gaussian", sigma=1.5), builtin_kernel("sharpen")]
    options = FilterOptions(backend="direct")
    out = tmp_path / f"stream{ext}"
    report = filter_file(src, out, kernels, options, strip_rows=9)
    assert report.streamed == (ext in (".png", ".tif")) and report.strip_rows == 9
    result, _ = filter_image(read_image(src), kernels, options)
    ref = tmp_path / f"whole{ext}"
    write_image(result, ref)
    assert out.read_bytes() == ref.read_bytes()


def test_a_failure_mid_stream_leaves_no_file_and_keeps_the_old_output(tmp_path, monkeypatch):
    src = tmp_path / "in.png"
    PILImage.fromarray(RNG.integers(0, 256, (64, 8)).astype(np.uint8)).save(src)
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous output")
    calls = []
    original = Stream._strip

    def fail_on_the_third(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, *args)

    monkeypatch.setattr(Stream, "_strip", fail_on_the_third)
    with pytest.raises(
        ImageWriteError, match="out.png: cannot write \\(No space left on device\\)"
    ):
        filter_file(src, out, [builtin_kernel("box")], strip_rows=4, workers=1)
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]


def test_pixel_limit_refuses_before_decoding(tmp_path):
    src = tmp_path / "big.png"
    PILImage.new("L", (300, 200)).save(src)
    with pytest.raises(ImageReadError, match="300x200 = 60,000 pixels, above the limit of 59,999"):
        filter_file(src, tmp_path / "o.png", [builtin_kernel("box")], max_pixels=59_999)
    assert not (tmp_path / "o.png").exists()
    filter_file(src, tmp_path / "o.png", [builtin_kernel("box")], max_pixels=0)
    assert read_samples(tmp_path / "o.png").samples.shape == (200, 300, 1)


def test_cli_max_pixels_and_verbose_strips(tmp_path):
    src = tmp_path / "in.png"
    PILImage.new("RGB", (40, 30)).save(src)
    runner = CliRunner()
    result = runner.invoke(
        main, ["blur", str(src), "-o", str(tmp_path / "o.png"), "--max-pixels", "1000"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {src}: image too large (40x30 = 1,200 pixels, above the limit of 1,000; "
        "--max-pixels raises it, 0 for none)"
    )
    result = runner.invoke(main, ["blur", str(src), "-o", str(tmp_path / "o.png"), "-v"])
    assert result.exit_code == 0, result.output
    assert "strips of" in result.stderr and "(streamed)" in result.stderr
    assert read_samples(tmp_path / "o.png").samples.shape == (30, 40, 3)


# -- the PNG encoder -------------------------------------------------------------------------


@pytest.mark.parametrize("bands", BANDS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_png_round_trip_every_layout_depth_and_level(tmp_path, bands, dtype, level):
    samples = RNG.integers(0, np.iinfo(dtype).max + 1, (37, 11, len(bands))).astype(dtype)
    path = tmp_path / "x.png"
    path.write_bytes(encode_png(samples, bands, level=level))
    back = read_samples(path, lazy=False)  # Pillow (8-bit) or convcli's 16-bit decoder
    assert back.bands == bands and back.samples.dtype == dtype
    np.testing.assert_array_equal(back.samples, samples)
    with read_samples(path) as rows:  # the row reader
        assert rows.bands == bands and rows.samples.dtype == dtype
        np.testing.assert_array_equal(rows.samples[0:37], samples)


def test_png_written_in_uneven_strips_on_threads_is_one_valid_stream(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    samples = RNG.integers(0, 256, (301, 19, 3)).astype(np.uint8)
    buf = io.BytesIO()
    with ThreadPoolExecutor(2) as pool:
        writer = PngWriter(buf, 19, 301, "RGB", np.uint8, pool=pool, workers=2)
        for start in range(0, 301, 7):
            writer.write(samples[start : start + 7])
        writer.close()
    data = buf.getvalue()
    with PILImage.open(io.BytesIO(data)) as im:
        im.verify()  # CRCs and the zlib stream's Adler-32
    with PILImage.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(np.asarray(im), samples)
    # the same strips on one thread give the same bytes: threads never change the file
    alone = io.BytesIO()
    writer = PngWriter(alone, 19, 301, "RGB", np.uint8)
    for start in range(0, 301, 7):
        writer.write(samples[start : start + 7])
    writer.close()
    assert alone.getvalue() == data


def test_png_writer_refuses_rows_that_do_not_fit():
    writer = PngWriter(io.BytesIO(), 4, 2, "L", np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        writer.write(np.zeros((1, 5, 1), np.uint8))
    writer.write(np.zeros((2, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="more rows"):
        writer.write(np.zeros((1, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="has 0 of its 3 rows"):
        PngWriter(io.BytesIO(), 4, 3, "L", np.uint8).close()


def test_png_metadata_icc_dpi_and_exif_read_back_by_pillow(tmp_path):
    exif = PILImage.Exif()
    exif[0x010F] = "Camera maker"  # Make
    icc = b"\x00\x01" * 200
    meta = ImageMeta(icc_profile=icc, dpi=(300.0, 300.0), exif=exif.tobytes())
    image = Image(np.full((5, 6, 3), 0.5, np.float32), "RGB", "8", meta)
    write_image(image, tmp_path / "m.png")
    with PILImage.open(tmp_path / "m.png") as im:
        assert im.info["icc_profile"] == icc
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)
        assert im.getexif()[0x010F] == "Camera maker"


def test_default_png_level_is_close_to_pillows_level_3_on_the_sample_photos(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sample_images"
    ratios = []
    for name in ("coffee.jpg", "camera.png", "chelsea_cutout.png"):
        with PILImage.open(root / name) as im:
            im.load()
            buf = io.BytesIO()
            im.save(buf, "PNG", compress_level=3)
            samples = read_samples(root / name)
        ours = encode_png(samples.samples, samples.bands)
        ratios.append(len(ours) / len(buf.getvalue()))
    assert all(0.85 < r < 1.10 for r in ratios), ratios


# -- the cost model without scipy.fft ---------------------------------------------------------


def test_next_fast_len_is_scipys():
    for n in list(range(1, 3000)) + [10007, 65537, 99991, 123456]:
        assert next_fast_len(n) == scipy.fft.next_fast_len(n, real=False), n


@pytest.mark.parametrize("preset", [None, "4"])
def test_the_command_gives_openblas_one_thread_unless_told(monkeypatch, preset):
    import convcli.__main__ as entry
    import convcli.cli

    if preset is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", preset)
    seen = []

    def main(**kw):
        seen.append((os.environ.get("OPENBLAS_NUM_THREADS"), kw))

    monkeypatch.setattr(convcli.cli, "main", main)
    entry.run()
    assert seen == [(preset or "1", {"prog_name": "convcli"})]


def test_the_command_ends_early_with_its_output_and_exit_status(tmp_path):
    """command() skips the interpreter's teardown: stdout, stderr, the file and the exit
    status must all still be there (and an error still one line)."""
    import subprocess
    import sys

    src, out = tmp_path / "in.png", tmp_path / "out.png"
    PILImage.fromarray(RNG.integers(0, 256, (30, 40, 3)).astype(np.uint8)).save(src)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered pipes

    def convcli(*args):
        return subprocess.run(
            [sys.executable, "-m", "convcli", *map(str, args)], capture_output=True, text=True,
            env=env,
        )  # fmt: skip

    done = convcli("blur", src, "-o", out, "--sigma", 1, "-v")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr + done.stdout
    expected, _ = _whole(read_samples(src, lazy=False), [builtin_kernel("gaussian", sigma=1)],
                         FilterOptions())  # fmt: skip
    np.testing.assert_array_equal(read_samples(out, lazy=False).samples, expected)
    listed = convcli("kernels", "show", "box:size=3")
    assert listed.returncode == 0 and listed.stdout.strip()
    failed = convcli("blur", tmp_path / "missing.png", "-o", out)
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"Error: {tmp_path / 'missing.png'}: no such file"
    assert convcli("blur", "--no-such-option").returncode == 2


def test_cli_blur_does_not_import_scipy_fft(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "in.png"
    PILImage.new("RGB", (20, 20)).save(src)
    code = (
        "import sys; from convcli.cli import main\n"
        f"sys.argv = ['convcli', 'blur', {str(src)!r}, '-o', {str(tmp_path / 'o.png')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('scipy.fft' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert os.path.getsize(tmp_path / "o.png") > 0


# -- PNG read by rows ------------------------------------------------------------------------


def _pillow_png(path, values, level=6):
    PILImage.fromarray(values[:, :, 0] if values.shape[2] == 1 else values).save(
        path, compress_level=level
    )  # adaptive filters: every PNG filter type appears
    return path


@needs_native
@pytest.mark.parametrize("policy", ["clip", "rescale"])
@pytest.mark.parametrize("mode", ["reflect", "wrap", "mirror"])
def test_png_to_png_by_rows_gives_the_whole_image_result(tmp_path, policy, mode):
    values = RNG.integers(0, 256, (120, 31, 3)).astype(np.uint8)
    values[:, :10] = 40  # flat areas too, for filter types None and Sub
    src = _pillow_png(tmp_path / "in.png", values)
    with read_samples(src) as stored:
        assert type(stored.samples).__name__ == "PngRows"
    kernels = [builtin_kernel("emboss"), Kernel(RNG.normal(size=(4, 2)), origin=(0, 1))]
    options = FilterOptions(backend="direct", mode=mode, range_policy=policy)
    for rows, workers in ((1, 1), (7, 2), (64, 2)):
        out = tmp_path / f"out{rows}.png"
        filter_file(src, out, kernels, options, strip_rows=rows, workers=workers)
        expected, _ = filter_image(read_image(src), kernels, options)
        got = read_samples(out, lazy=False).samples
        np.testing.assert_array_equal(got, to_depth(expected.pixels, "8"))


@needs_native
def test_16bit_png_by_rows(tmp_path):
    values = RNG.integers(0, 65536, (50, 20, 4)).astype(np.uint16)
    src = tmp_path / "in16.png"
    src.write_bytes(encode_png(values, "RGBA"))
    with read_samples(src) as stored:
        assert stored.depth == "16" and type(stored.samples).__name__ == "PngRows"
        np.testing.assert_array_equal(stored.samples[10:50], values[10:50])
    options = FilterOptions(backend="direct")
    filter_file(src, tmp_path / "o.png", [builtin_kernel("box")], options, strip_rows=3)
    expected, _ = filter_image(read_image(src), [builtin_kernel("box")], options)
    got = read_samples(tmp_path / "o.png", lazy=False).samples
    np.testing.assert_array_equal(got, to_depth(expected.pixels, "16"))


@needs_native
def test_a_png_cut_short_names_the_row_and_leaves_nothing(tmp_path):
    values = RNG.integers(0, 256, (400, 300, 3)).astype(np.uint8)
    src = _pillow_png(tmp_path / "cut.png", values, level=1)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 3 // 4])
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    with pytest.raises(
        ImageReadError, match=r"cut.png: cannot decode PNG at row (\d+) \(file cut short\)"
    ) as info:
        filter_file(src, out, [builtin_kernel("box")], strip_rows=16)
    row = int(info.value.args[0].split("row ")[1].split(" ")[0])
    assert 200 <= row < 400  # about three quarters of the rows were there
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.png", "out.png"]


@needs_native
def test_a_corrupt_png_stream_names_the_row(tmp_path):
    values = RNG.integers(0, 256, (200, 100, 1)).astype(np.uint8)
    src = _pillow_png(tmp_path / "bad.png", values, level=1)
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(range(64))
    src.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"bad.png: cannot decode PNG at row \d+ \("):
        filter_file(src, tmp_path / "o.png", [builtin_kernel("box")])
    assert not (tmp_path / "o.png").exists()


@needs_native
def test_the_png_reader_holds_only_recent_rows(tmp_path):
    values = RNG.integers(0, 256, (4000, 1000, 1)).astype(np.uint8)
    src = _pillow_png(tmp_path / "tall.png", values, level=1)
    with read_samples(src) as stored:
        reader = stored.samples
        stream = stream_samples(stored, [builtin_kernel("box")], FilterOptions(), strip_rows=50)
        held = 0
        got = []
        for strip in stream:
            got.append(strip)
            held = max(held, sum(b.shape[0] for b in reader._rows))
        block = (1 << 20) // 1001  # rows inflated at a time
        assert reader._retain < 4000 and held <= reader._retain + 2 * block
        assert held < 4000  # never the whole image
    expected, _ = filter_image(read_image(src), [builtin_kernel("box")], FilterOptions())
    np.testing.assert_array_equal(np.concatenate(got), to_depth(expected.pixels, "8"))


@needs_native
def test_png_exif_is_found_without_decoding_and_orientation_is_applied(tmp_path):
    values = RNG.integers(0, 256, (6, 9, 3)).astype(np.uint8)
    exif = PILImage.Exif()
    exif[0x010F] = "Maker"
    PILImage.fromarray(values).save(tmp_path / "e.png", exif=exif.tobytes())
    with read_samples(tmp_path / "e.png") as stored:
        assert type(stored.samples).__name__ == "PngRows"  # streamed, EXIF kept
        back = PILImage.Exif()
        back.load(stored.meta.exif)
        assert back[0x010F] == "Maker"
    exif[0x0112] = 6  # rotated: decoded whole and turned upright, as Pillow shows it
    PILImage.fromarray(values).save(tmp_path / "r.png", exif=exif.tobytes())
    stored = read_samples(tmp_path / "r.png")
    assert isinstance(stored.samples, np.ndarray) and stored.samples.shape == (9, 6, 3)
    np.testing.assert_array_equal(stored.samples, np.rot90(values, 3))


def test_damaged_files_give_read_errors_and_leave_nothing(tmp_path):
    """Random byte changes and cuts in PNG, 16-bit PNG, TIFF (strips, tiles), JPEG, GIF, WebP
    and BMP files:
    every failure is a one-line ConvcliError, and no temporary file is left."""
    import random

    import tifffile

    from convcli.errors import ConvcliError

    values = RNG.integers(0, 256, (60, 40, 3)).astype(np.uint8)
    sources = {"p.png": _pillow_png(tmp_path / "p0.png", values).read_bytes()}
    sources["c.png"] = encode_png(values.astype(np.uint16) * 257, "RGB")
    for name, extra in (("t.tif", {"rowsperstrip": 8, "compression": "zlib"}),
                        ("tt.tif", {"tile": (16, 16)})):  # fmt: skip
        buf = io.BytesIO()
        tifffile.imwrite(buf, values, photometric="rgb", **extra)
        sources[name] = buf.getvalue()
    others = [("j.jpg", "JPEG", {}), ("g.gif", "GIF", {}),
              ("w.webp", "WEBP", {"lossless": True}), ("b.bmp", "BMP", {})]  # fmt: skip
    for name, fmt, extra in others:
        buf = io.BytesIO()
        PILImage.fromarray(values).save(buf, fmt, **extra)
        sources[name] = buf.getvalue()
    work = tmp_path / "work"
    work.mkdir()
    chance = random.Random(20261201)
    failures = 0
    for name, data in sources.items():
        for _ in range(40):
            damaged = bytearray(data)
            for _ in range(chance.randint(1, 6)):
                damaged[chance.randrange(len(damaged))] = chance.randrange(256)
            if chance.random() < 0.3:
                damaged = damaged[: chance.randrange(len(damaged))]
            (work / name).write_bytes(bytes(damaged))
            try:
                filter_file(work / name, work / "out.png", [builtin_kernel("box")],
                            max_pixels=10_000_000)  # fmt: skip
            except ConvcliError as exc:
                failures += 1
                assert "\n" not in str(exc) and name in str(exc)
            assert not [p for p in work.iterdir() if p.name.startswith(".convcli-")]
    assert failures > 120  # most damage is found


def test_output_onto_a_fifo_or_device_streams_into_it(tmp_path):
    import stat
    import threading

    src = tmp_path / "in.png"
    PILImage.fromarray(RNG.integers(0, 256, (20, 30, 3)).astype(np.uint8)).save(src)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    filter_file(src, fifo, [builtin_kernel("box")], format="png")
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not a regular file
    assert received and received[0].startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "pipe"]
    try:  # a private null device (root only): written into, never replaced
        null = tmp_path / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        return
    filter_file(src, null, [builtin_kernel("box")], format="png")
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_in_place_through_a_symlink_filters_the_file_and_keeps_the_link(tmp_path):
    real = tmp_path / "real.png"
    values = RNG.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    PILImage.fromarray(values).save(real)
    link = tmp_path / "link.png"
    link.symlink_to(real)
    result = CliRunner().invoke(main, ["blur", str(link), "--in-place"])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    expected, _ = filter_image(
        Image(unit_float(values, "8"), "RGB", "8"), [builtin_kernel("gaussian", sigma=2)],
        FilterOptions(),
    )  # fmt: skip
    np.testing.assert_array_equal(
        read_samples(real, lazy=False).samples, to_depth(expected.pixels, "8")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "real.png"]


def test_control_characters_in_names_are_escaped_in_errors(tmp_path):
    bad = tmp_path / "a\nb.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["blur", str(bad), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "a\\nb.png: not an image file" in lines[0]
