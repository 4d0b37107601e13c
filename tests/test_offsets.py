"""Kernel offsets (libvips .mat) and the output bias (ImageMagick -bias): the same on the
strip engine and the whole-image path, and as the tools define them."""

from __future__ import annotations

import numpy as np
import pytest

from convcli.image_io import Image, Samples, to_depth, unit_float
from convcli.kernels import Kernel, builtin_kernel
from convcli.pipeline.engine import filter_samples
from convcli.process import FilterOptions, filter_image

RNG = np.random.default_rng(31)


def _whole(stored: Samples, kernels, options):
    image = Image(unit_float(stored.samples, stored.depth), stored.bands, stored.depth)
    out, _ = filter_image(image, kernels, options)
    return to_depth(out.pixels, out.depth)


@pytest.mark.parametrize("bands", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("alpha", ["premultiply", "plain"])
def test_kernel_offsets_and_bias_strips_equal_whole(bands, alpha):
    """A kernel's offset (levels of the input) and the output bias: the strip engine gives
    the whole-image path's bytes, and the offset is what libvips' .mat rule says."""
    channels = len(bands)
    img = RNG.integers(0, 256, (23, 19, channels)).astype(np.uint8)
    emboss = Kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], offset=128.0)
    chain = [builtin_kernel("box"), emboss]
    opts = FilterOptions(backend="direct", alpha=alpha, bias=0.1)
    stored = Samples(img, bands, "8")
    expected = _whole(stored, chain, opts)
    for rows in (1, 2, 7):
        np.testing.assert_array_equal(filter_samples(img, chain, opts, strip_rows=rows), expected)
    # on a flat grey image the emboss's weights (sum 1) keep the level: out = level + 128 + bias
    flat = np.full((9, 9, 1), 60, np.uint8)
    out = filter_samples(flat, [emboss], FilterOptions(backend="direct", bias=10 / 255))
    assert (out == 60 + 128 + 10).all()


def test_cli_bias_and_mat_offset(tmp_path):
    from click.testing import CliRunner
    from PIL import Image as PILImage

    from convcli.cli import main

    src = tmp_path / "a.png"
    PILImage.fromarray(RNG.integers(0, 256, (21, 18, 3)).astype(np.uint8)).save(src)
    run = CliRunner().invoke
    a, b = tmp_path / "bias.png", tmp_path / "offset.png"
    assert (
        run(
            main, ["apply", str(src), "-k", "sobel:axis=x", "--bias", "50%", "-o", str(a)]
        ).exit_code
        == 0
    )
    assert (
        run(
            main, ["apply", str(src), "-k", "sobel:axis=x", "--range", "offset", "-o", str(b)]
        ).exit_code
        == 0
    )
    assert a.read_bytes() == b.read_bytes()  # +0.5 then clip is the offset policy
    mat = tmp_path / "e.mat"
    mat.write_text("3 3 1 128\n-1 0 0\n0 1 0\n0 0 0\n")  # a difference plus mid-grey
    out = tmp_path / "m.png"
    assert (
        run(
            main, ["apply", str(src), "-k", str(mat), "--op", "correlate", "-o", str(out)]
        ).exit_code
        == 0
    )
    pixels = np.asarray(PILImage.open(src)).astype(int)
    got = np.asarray(PILImage.open(out)).astype(int)
    expect = np.clip(pixels[1:, 1:] - pixels[:-1, :-1] + 128, 0, 255)  # interior
    np.testing.assert_array_equal(got[1:, 1:], expect)
    shown = run(main, ["kernels", "show", str(mat)])
    assert "offset" in shown.stdout and "128 levels" in shown.stdout
    bad = run(main, ["apply", str(src), "-k", "box", "--bias", "x%", "-o", str(out)])
    assert bad.exit_code == 2 and "not a number or a percentage" in bad.stderr


def test_compose_carries_offsets_as_a_chain_applies_them():
    from convcli.algebra import compose

    a = Kernel([[1, 2, 1]], offset=10.0)
    b = Kernel([[0, 1, 0], [1, 2, 1], [0, 1, 0]], offset=-3.0)
    one = compose([a, b])
    assert one.offset == 10.0 * b.sum - 3.0
    img = RNG.integers(0, 200, (16, 16, 1)).astype(np.uint8)
    chained = filter_samples(
        img, [a.normalized(), b.normalized()], FilterOptions(mode="wrap", depth="float")
    )
    once = filter_samples(
        img, [compose([a.normalized(), b.normalized()])], FilterOptions(mode="wrap", depth="float")
    )
    np.testing.assert_allclose(chained, once, atol=1e-5)


@pytest.mark.parametrize("bands", ["LA", "RGBA"])
def test_background_flattens_alpha_the_same_on_both_paths(bands):
    from convcli.process import parse_colour

    img = RNG.integers(0, 256, (17, 13, len(bands))).astype(np.uint8)
    img[0, 0, -1], img[0, 1, -1] = 0, 255  # fully transparent, fully opaque
    bg = parse_colour("#ff8000")
    opts = FilterOptions(backend="direct", background=bg)
    identity = Kernel([[1.0]])
    out = filter_samples(img, [identity], opts, bands=bands)
    assert out.shape[2] == len(bands) - 1  # no alpha left
    expected = _whole(Samples(img, bands, "8"), [identity], opts)
    np.testing.assert_array_equal(out, expected)
    back = np.array(bg) * 255 if bands == "RGBA" else [0.299 * 255 + 0.587 * 128]
    np.testing.assert_array_equal(out[0, 0], np.round(back))  # transparent: the background
    np.testing.assert_array_equal(out[0, 1], img[0, 1, :-1])  # opaque: the colour itself
    a = img[..., -1:] / 255.0
    ref = np.round(np.clip(img[..., :-1] / 255.0 * a + np.array(back) / 255 * (1 - a), 0, 1) * 255)
    assert np.abs(out.astype(int) - ref).max() <= 1
    for rows in (1, 5):
        blurred = filter_samples(
            img, [builtin_kernel("gaussian", sigma=1)], opts, bands=bands, strip_rows=rows
        )
        np.testing.assert_array_equal(
            blurred, _whole(Samples(img, bands, "8"), [builtin_kernel("gaussian", sigma=1)], opts)
        )


def test_cli_background_lets_alpha_go_to_jpeg(tmp_path):
    from click.testing import CliRunner
    from PIL import Image as PILImage

    from convcli.cli import main

    src = tmp_path / "a.png"
    PILImage.fromarray(RNG.integers(0, 256, (12, 10, 4)).astype(np.uint8), "RGBA").save(src)
    run = CliRunner().invoke
    refused = run(main, ["blur", str(src), "-o", str(tmp_path / "x.jpg")])
    assert refused.exit_code == 1 and "--background COLOR" in refused.stderr
    done = run(main, ["blur", str(src), "-o", str(tmp_path / "x.jpg"), "--background", "white"])
    assert done.exit_code == 0, done.output
    with PILImage.open(tmp_path / "x.jpg") as im:
        assert im.mode == "RGB"
    edge = run(main, ["edge", str(src), "-o", str(tmp_path / "e.bmp"), "--background", "0,0,0"])
    assert edge.exit_code == 0, edge.output
    with PILImage.open(tmp_path / "e.bmp") as im:
        assert im.mode == "RGB"
    bad = run(main, ["blur", str(src), "-o", str(tmp_path / "y.png"), "--background", "nocolour"])
    assert bad.exit_code == 2 and "is not a name" in bad.stderr


def test_compare_leaves_a_kernel_offset_out_and_says_so(tmp_path):
    from click.testing import CliRunner
    from PIL import Image as PILImage

    from convcli.cli import main

    src = tmp_path / "a.png"
    PILImage.fromarray(RNG.integers(0, 256, (20, 20)).astype(np.uint8)).save(src)
    with_offset = tmp_path / "e.mat"
    with_offset.write_text("3 3 16 128\n-2 -1 0\n-1 1 1\n0 1 2\n")
    without = tmp_path / "f.mat"
    without.write_text("3 3 16 0\n-2 -1 0\n-1 1 1\n0 1 2\n")
    a = CliRunner().invoke(main, ["compare", str(src), "-k", str(with_offset), "--json"])
    b = CliRunner().invoke(main, ["compare", str(src), "-k", str(without), "--json"])
    assert "offset (128 levels) is left out" in a.stderr
    import json

    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["verdict"] == jb["verdict"] and ja["conv_vs_corr"] == jb["conv_vs_corr"]
