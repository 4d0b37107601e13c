"""convcli compare: verdicts, numbers, JSON, exit codes and the panel image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from convcli.cli import main
from convcli.compare import compare, diff_stats
from convcli.kernel_io import load_kernel
from convcli.kernels import Kernel, builtin_kernel
from convcli.panel import (
    MIN_SIDE,
    PAD,
    TILE,
    checkerboard,
    heat,
    panel_layout,
    render_panel,
    result_images,
    tile_size,
)

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(9)
IMG = RNG.random((24, 31, 3)).astype(np.float32)

EQUAL = [
    "gaussian:sigma=1.5",
    "box:size=5",
    "laplacian",
    "laplacian:neighbours=8",
    "sharpen",
    str(ROOT / "kernels" / "gaussian5x5_273.txt"),
    "log:sigma=1",
]
NEGATED = [
    "sobel:axis=x",
    "sobel:axis=y",
    "prewitt",
    "scharr:axis=y",
    str(ROOT / "kernels" / "sobel_y.mat"),
]
DIFFERENT = [
    "emboss",
    "emboss:direction=n",
    "motion:length=5,angle=30",
    str(ROOT / "kernels" / "motion5_30deg.npy"),
    "3x3: 1,2,3 4,5,6 7,8,9",
]


@pytest.mark.parametrize("backend", ["direct", "fft"])
@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest", "mirror", "wrap"])
def test_verdicts(backend, mode):
    for specs, verdict in ((EQUAL, "equal"), (NEGATED, "negated"), (DIFFERENT, "different")):
        for spec in specs:
            r = compare(IMG, load_kernel(spec), backend=backend, mode=mode, cval=0.3)
            assert r.verdict == verdict, (spec, r.explanation)
            assert r.plan.backend == backend
            # the identity behind everything: convolution is correlation with rot180(K),
            # here computed by turning the image instead: equal within rounding, and as
            # written at most one 8-bit step apart
            assert r.conv_vs_flipped_corr.max_abs <= r.tolerance
            q = lambda a: np.rint(np.clip(a, 0, 1) * 255)  # noqa: E731
            assert np.abs(q(r.conv) - q(r.flip)).max() <= 1


def test_numbers_are_what_they_say():
    k = load_kernel("emboss")
    r = compare(IMG, k, backend="direct", dtype="float64", range_policy="clip")
    diff = np.abs(r.conv - r.corr)  # raw results: the maths
    assert r.conv_vs_corr.max_abs == pytest.approx(diff.max())
    assert r.conv_vs_corr.mean_abs == pytest.approx(diff.mean())
    assert diff.max() > 1  # emboss leaves [0, 1]: raw and written values do differ here
    q = lambda a: np.rint(np.clip(a, 0, 1) * 255)  # noqa: E731  as written, 8-bit
    assert r.conv_vs_corr.differing_pixels == int((q(r.conv) != q(r.corr)).any(axis=2).sum())
    # PSNR on the same written values, over the 8-bit peak
    mse = np.mean((q(r.conv) - q(r.corr)) ** 2)
    assert r.conv_vs_corr.psnr == pytest.approx(10 * np.log10(255**2 / mse))
    assert r.verdict == "different" and r.explanation.startswith("DIFFERENT - max |diff|")


def test_psnr_is_not_negative_on_a_tiny_image():
    tiny = np.random.default_rng(1).random((3, 3)).astype(np.float32)
    for depth, top in (("8", 255), ("16", 65535)):
        r = compare(tiny, load_kernel("emboss"), backend="direct", depth=depth)
        q = lambda a, top=top: np.rint(np.clip(a, 0, 1) * top)  # noqa: E731
        mse = np.mean((q(r.conv) - q(r.corr)) ** 2)
        assert r.conv_vs_corr.psnr == pytest.approx(10 * np.log10(top**2 / mse))
        assert r.conv_vs_corr.psnr >= 0  # the raw values (peak 1) gave about -6 dB
    # float output: unmapped values, peak = their range, a difference is beyond rounding
    r = compare(tiny, load_kernel("emboss"), backend="fft", depth="float")
    both = np.concatenate([r.conv.ravel(), r.corr.ravel()]).astype(np.float64)
    mse = np.mean((r.conv.astype(np.float64) - r.corr) ** 2)
    span = both.max() - both.min()
    assert r.conv_vs_corr.psnr == pytest.approx(10 * np.log10(span**2 / mse))
    assert r.conv_vs_corr.psnr >= 0
    a = IMG[..., 0].astype(np.float64)
    rounded = a + RNG.uniform(-1e-7, 1e-7, a.shape)  # float rounding is not a difference
    assert diff_stats(a, rounded, "float", tolerance=1e-6).differing_pixels == 0
    assert diff_stats(a, rounded, "float", tolerance=0.0).differing_pixels > a.size // 2


def test_flat_image_verdict_follows_the_kernel_class(tmp_path):
    flat = np.full((12, 14), 0.5, np.float32)
    r = compare(flat, load_kernel("sobel"))
    assert r.conv_vs_corr.max_abs == 0 and r.conv_vs_negated_corr.max_abs == 0
    assert r.verdict == "negated"
    assert r.explanation.startswith("NEGATED - the kernel is antisymmetric")
    assert "both hold" in r.explanation
    assert compare(flat, load_kernel("laplacian")).verdict == "equal"
    zero_sum = Kernel([[0, 1, -2], [0, 1, 0], [0, 0, 0]])  # asymmetric, sum 0: both 0 here
    r = compare(flat, zero_sum)
    assert r.verdict == "equal" and "not symmetric" in r.explanation
    assert "both hold" in r.explanation
    r = compare(flat, load_kernel("emboss"))  # sum 1: both 0.5, equal but not negated
    assert r.verdict == "equal" and "both hold" not in r.explanation
    src = tmp_path / "flat.png"
    PILImage.fromarray(np.full((12, 14), 128, np.uint8)).save(src)
    result = CliRunner().invoke(main, ["compare", str(src), "-k", "sobel", "--expect", "negated"])
    assert result.exit_code == 0, result.output
    # 'offset' shows a zero response as mid-grey, and the panel says so
    r = compare(flat, load_kernel("sobel"))
    layout = panel_layout(r, flat)
    assert "signed results shown with 'offset': result + 0.5, so 0 = mid-grey" in "".join(
        layout.lines
    )
    arr = np.asarray(render_panel(r, flat))
    x0, y0, x1, y1 = layout.content_box(1)
    assert (arr[y0:y1, x0:x1] == 128).all()


def test_even_kernel_with_symmetric_weights_is_different_and_explained():
    k = Kernel(np.ones((2, 2)) / 4)  # origin (1, 1): flipping moves the anchor
    r = compare(IMG, k, backend="direct")
    assert r.verdict == "different"
    assert "origin is not their centre" in r.explanation
    assert r.conv_vs_flipped_corr.max_abs == 0
    explicit = Kernel(np.arange(6.0).reshape(2, 3), origin=(0, 2))
    r = compare(IMG, explicit, backend="fft")
    assert r.verdict == "different" and r.conv_vs_flipped_corr.max_abs <= r.tolerance


@pytest.mark.parametrize("depth", ["8", "16"])
def test_negated_and_equal_explanations(depth):
    r = compare(IMG[..., :1], load_kernel("sobel"), depth=depth)
    assert r.verdict == "negated"
    assert r.explanation.startswith("NEGATED - the kernel is antisymmetric")
    assert r.range_policy == "offset"  # zero-sum kernel: 0 shown as mid-grey
    r = compare(IMG, load_kernel("gaussian:sigma=1"), depth=depth)
    assert r.explanation.startswith("EQUAL - the kernel is point-symmetric")
    assert r.conv_vs_corr.differing_pixels == 0 and r.conv_vs_corr.psnr == float("inf")


HEAT_ZERO = tuple(int(v) for v in heat(np.zeros(1))[0])  # the heat map's colour for 0
WHITE = (255, 255, 255)


def _region(arr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return arr[y0:y1, x0:x1]


@pytest.mark.parametrize(
    ("shape", "content"),
    [
        ((5, 7, 1), (320, 229)),  # tiny: enlarged for display only
        ((24, 31, 3), (320, 248)),
        ((900, 700, 3), (249, 320)),  # big: shrunk for display only
        ((60, 3000, 3), (320, 6)),  # extreme aspects: letterboxed in a MIN_SIDE box
        ((3000, 60, 1), (6, 320)),
    ],
)
def test_panel_layout(shape, content):
    img = RNG.random(shape).astype(np.float32)
    r = compare(img, load_kernel("emboss"), backend="direct")
    panel = render_panel(r, img)
    layout = panel_layout(r, img)
    assert panel.size == layout.size
    assert tile_size(shape[0], shape[1]) == layout.content == content
    assert max(content) == TILE  # the display is resized; the numbers are not
    bw, bh = layout.box
    assert min(bw, bh) >= MIN_SIDE and bw >= content[0] and bh >= content[1]
    # the box fits the image (or MIN_SIDE, or the loupe's magnified crop when there is one)
    assert bh in (content[1], MIN_SIDE, layout.crop_content[1])
    arr = np.asarray(panel).astype(int)
    rows, cols = arr.shape[:2]
    assert (rows, cols) == (layout.size[1], layout.size[0])
    # nothing cut off: the outer margin is background all round
    for edge in (arr[:6], arr[-6:], arr[:, :6], arr[:, -6:]):
        assert (edge == 255).all()
    for i, (x, y) in enumerate(layout.tiles):
        label = arr[y - 22 : y, x : x + 60]
        assert (label < 100).any()  # dark label text above the tile
        if i:
            assert x >= layout.tiles[i - 1][0] + bw + 2  # tiles do not overlap
        shown = _region(arr, layout.content_box(i))
        assert shown.shape[:2] == (content[1], content[0])
        # image content, not the background or a flat colour (random input)
        assert shown.std() > 5 and len(np.unique(shown.reshape(-1, 3), axis=0)) >= 5
        tile = arr[y : y + bh, x : x + bw]
        pad = np.ones(tile.shape[:2], bool)
        ox, oy = layout.offset
        pad[oy : oy + content[1], ox : ox + content[0]] = False
        assert (tile[pad] == PAD).all()  # the letterbox (empty when the image fills the box)
    # the input tile is the input, resized
    shown = _region(arr, layout.content_box(0))
    assert abs(shown.mean() / 255 - img[..., :3].mean()) < 0.05
    # the heat map of an asymmetric kernel is not uniform
    heat_tile = _region(arr, layout.content_box(3))
    assert len(np.unique(heat_tile.reshape(-1, 3), axis=0)) > 10
    # the kernel grid: emboss's -2 at the top left (deepest red), 2 at the bottom right (blue)
    x0, y0, x1, y1 = layout.grid
    cell = layout.cell
    assert (x1 - x0, y1 - y0) == (3 * cell, 3 * cell)
    assert tuple(arr[y0 + cell - 3, x0 + cell - 3]) == (255, 105, 105)
    assert tuple(arr[y1 - 3, x1 - 3]) == (105, 105, 255)
    # the text lines are drawn, the last one included
    tx, ty = layout.text_at
    last = arr[ty + 18 * (len(layout.lines) - 1) : ty + 18 * len(layout.lines), tx:]
    assert (last < 100).any()


def test_heat_map_is_uniform_zero_for_a_symmetric_kernel():
    r = compare(IMG, load_kernel("gaussian:sigma=1.5"), backend="direct")
    layout = panel_layout(r, IMG)
    arr = np.asarray(render_panel(r, IMG))
    heat_tile = _region(arr, layout.content_box(3))
    assert (heat_tile == HEAT_ZERO).all()
    assert layout.lines[-1] == "heat map: |conv - corr| is 0 at every pixel"
    assert "display: results clipped to [0, 1] ('clip'): negative values black, above 1 white" in (
        layout.lines
    )


def _cutout(hidden: np.ndarray) -> np.ndarray:
    """RGBA 40x48: left half transparent holding ``hidden`` colour, right half opaque pattern."""
    img = np.zeros((40, 48, 4), np.float32)
    img[:, :24, :3] = hidden
    img[:, 24:, :3] = RNG.random((40, 24, 3))
    img[:, 24:, 3] = 1.0
    return img


def test_rgba_counts_only_what_is_visible():
    loud, dark = _cutout(RNG.random((40, 24, 3))), _cutout(np.zeros((40, 24, 3)))
    dark[:, 24:] = loud[:, 24:]
    k = load_kernel("emboss")
    r = compare(loud, k, backend="direct")
    assert r.alpha == "premultiply" and r.verdict == "different"
    # the hidden colour of transparent pixels changes nothing
    assert r.conv_vs_corr == compare(dark, k, backend="direct").conv_vs_corr
    # differences are in the opaque half and at the edge (the 3x3 kernel reaches 1 column)
    assert 0 < r.conv_vs_corr.differing_pixels <= 40 * 25
    # plain alpha filters the hidden colours too, but transparent pixels still never count
    plain = compare(loud, k, backend="direct", alpha="plain")
    assert np.abs(plain.conv - plain.corr)[:, :20, :3].max() > 0.1  # hidden, raw
    assert 0 < plain.conv_vs_corr.differing_pixels <= 40 * 25
    # opaque: the composites over black and white both see a colour difference
    opaque = compare(loud[:, 24:], k, backend="direct")
    q = lambda a: np.rint(np.clip(a[..., :3], 0, 1) * 255)  # noqa: E731
    changed = (q(opaque.conv) != q(opaque.corr)).any(axis=2).sum()
    assert opaque.conv_vs_corr.differing_pixels == changed


def test_rgba_panel_shows_transparency_over_a_checkerboard():
    img = _cutout(RNG.random((40, 24, 3)))
    r = compare(img, load_kernel("motion:length=5,angle=30"), backend="direct")
    layout = panel_layout(r, img)
    assert any(line.startswith("alpha: colour premultiplied") for line in layout.lines)
    arr = np.asarray(render_panel(r, img))
    w, h = layout.content
    # the left third of each image tile is transparent in input and both results
    board = np.asarray(checkerboard((w, h)))[:, : w // 3]
    for i in range(3):
        shown = _region(arr, layout.content_box(i))
        assert (shown[:, : w // 3] == board).all()
        assert (board == (204, 204, 204)).all(axis=2).any() and (board == WHITE).all(axis=2).any()
        assert shown[:, -w // 3 :].std() > 20  # the opaque half shows the picture
    heat_tile = _region(arr, layout.content_box(3))
    assert (heat_tile[:, : w // 3] == HEAT_ZERO).all()  # transparent in both: no difference
    assert len(np.unique(heat_tile[:, w // 2 :].reshape(-1, 3), axis=0)) > 10
    # plain alpha: the hidden colours differ in the raw results, yet nothing is visible there
    plain = compare(img, load_kernel("motion:length=5,angle=30"), alpha="plain")
    assert np.abs(plain.conv - plain.corr)[:, :12, :3].max() > 0.1
    arr = np.asarray(render_panel(plain, img))
    assert (_region(arr, layout.content_box(3))[:, : w // 3] == HEAT_ZERO).all()
    assert (_region(arr, layout.content_box(1))[:, : w // 3] == board).all()


def test_cli_compare_rgba_panel(tmp_path):
    src = tmp_path / "cut.png"
    PILImage.fromarray(np.rint(_cutout(RNG.random((40, 24, 3))) * 255).astype(np.uint8)).save(src)
    panel = tmp_path / "panel.png"
    result = CliRunner().invoke(
        main, ["compare", str(src), "-k", "emboss", "--json", "-o", str(panel)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["alpha"] == "premultiply" and report["verdict"] == "different"
    assert report["conv_vs_corr"]["differing_pixels"] <= 40 * 25
    with PILImage.open(panel) as im:
        arr = np.asarray(im.convert("RGB"))
    # the input tile's transparent left half is the checkerboard
    x, y = 12, 12 + 60 + 22  # below the verdict banner and the label
    left = arr[y : y + 100, x : x + 100]
    assert (left == WHITE).all(axis=2).any() and (left == (204, 204, 204)).all(axis=2).any()


def test_result_images_raw_and_as_written(tmp_path):
    from convcli.image_io import from_array, read_image, write_image

    k = load_kernel("emboss")
    like = from_array(IMG, depth="8")
    r = compare(IMG, k, backend="direct")
    raw = result_images(r, like, "clip", raw=True)
    names = [f"{op}-{b}" for op in ("convolve", "correlate", "correlate-rot180") for b in "RGB"]
    assert sorted(raw) == sorted(names)
    assert r.conv.min() < 0 and r.conv.max() > 1  # values a PNG could not hold
    for name, values in (("convolve", r.conv), ("correlate", r.corr)):
        for c, band in enumerate("RGB"):
            image = raw[f"{name}-{band}"]
            assert image.depth == "float" and image.bands == "L"
            path = tmp_path / f"{name}-{band}.tif"
            write_image(image, path)
            back = read_image(path)
            assert back.depth == "float"
            np.testing.assert_array_equal(back.pixels[..., 0], values[..., c])
    grey = compare(IMG[..., 0], k, backend="direct")
    raw = result_images(grey, from_array(IMG[..., 0], depth="8"), "clip", raw=True)
    assert sorted(raw) == ["convolve", "correlate", "correlate-rot180"]
    # default: as convcli apply writes them (RGBA: straight colour mapped, alpha clipped)
    img = _cutout(RNG.random((40, 24, 3)))
    r = compare(img, k, backend="direct")
    out = result_images(r, from_array(img, depth="8"), "clip")["convolve"]
    assert out.bands == "RGBA" and out.pixels.shape == img.shape
    alpha = np.clip(r.conv[..., 3], 0, 1)
    np.testing.assert_allclose(out.pixels[..., 3], alpha)
    seen = alpha > 0.05
    colour = np.clip(r.conv[..., :3][seen] / alpha[seen][:, None], 0, 1)
    np.testing.assert_allclose(out.pixels[..., :3][seen], colour, atol=1e-6)
    assert (out.pixels[..., :3][alpha == 0] == 0).all()


def test_report_holds_every_setting_that_changes_results():
    r = compare(IMG, load_kernel("sobel"), mode="constant", cval=0.3, dtype="float64")
    d = r.to_dict()
    assert (d["boundary"], d["cval"], d["precision"]) == ("constant", 0.3, "float64")
    assert (d["depth"], d["alpha"], d["range_policy"]) == ("8", None, "offset")
    assert compare(IMG, load_kernel("sobel"), mode="constant", cval=0.0).to_dict()["cval"] == 0


def test_cli_compare_json_expect_panel_and_results(tmp_path):
    src = tmp_path / "in.png"
    PILImage.fromarray((IMG * 255).astype(np.uint8)).save(src)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "compare",
            str(src),
            "-k",
            "sobel",
            "--json",
            "--expect",
            "negated",
            "-o",
            str(tmp_path / "panel.png"),
            "--save-results",
            str(tmp_path / "res"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "negated"
    assert (report["cval"], report["precision"], report["depth"]) == (0.0, "float32", "8")
    assert set(report) >= {
        "kernel",
        "backend",
        "boundary",
        "cval",
        "precision",
        "conv_vs_corr",
        "conv_vs_flipped_corr",
        "verdict",
    }
    assert report["kernel"] == {
        "name": "sobel",
        "shape": [3, 3],
        "origin": [1, 1],
        "sum": 0.0,
        "symmetry": "antisymmetric",
        "separable": True,
    }
    assert set(report["conv_vs_corr"]) >= {"max_abs", "mean_abs", "differing_pixels", "psnr"}
    # the flip identity: equal within the rounding bound of one result
    assert report["conv_vs_flipped_corr"]["max_abs"] <= report["result_tolerance"]
    with PILImage.open(tmp_path / "panel.png") as panel:
        assert panel.mode == "RGB" and panel.width > 4 * 300
    names = sorted(p.name for p in (tmp_path / "res").iterdir())
    assert names == ["in-convolve.png", "in-correlate-rot180.png", "in-correlate.png"]
    a = np.asarray(PILImage.open(tmp_path / "res" / "in-convolve.png")).astype(int)
    b = np.asarray(PILImage.open(tmp_path / "res" / "in-correlate.png")).astype(int)
    # offset policy: conv = -corr around mid-grey, so the two sum to ~255
    assert np.abs(a + b - 255).max() <= 1


def test_cli_compare_expect_mismatch_exits_1(tmp_path):
    src = tmp_path / "in.png"
    PILImage.fromarray((IMG * 255).astype(np.uint8)).save(src)
    result = CliRunner().invoke(main, ["compare", str(src), "-k", "emboss", "--expect", "equal"])
    assert result.exit_code == 1
    assert "DIFFERENT" in result.stdout
    assert result.stderr.strip() == "Error: verdict is different, expected equal"


def test_cli_compare_16bit_rgba_and_terminal_report(tmp_path):
    src = tmp_path / "in.png"
    rgba = (RNG.random((20, 16, 4)) * 255).astype(np.uint8)
    PILImage.fromarray(rgba).save(src)
    result = CliRunner().invoke(main, ["compare", str(src), "-k", "box:size=3", "--backend", "fft"])
    assert result.exit_code == 0, result.output
    assert "EQUAL - the kernel is point-symmetric" in result.stdout
    assert "conv - corr" in result.stdout
    src16 = tmp_path / "g16.png"
    PILImage.fromarray((RNG.random((20, 16)) * 65535).astype(np.uint16)).save(src16)
    result = CliRunner().invoke(main, ["compare", str(src16), "-k", "scharr", "--json"])
    assert json.loads(result.stdout)["verdict"] == "negated"


def test_cli_compare_raw_results_are_the_float_results(tmp_path):
    from convcli.filtering import convolve, correlate

    rng = np.random.default_rng(11)
    arr = (rng.random((12, 15)) * 255).astype(np.uint8)
    src = tmp_path / "g.png"
    PILImage.fromarray(arr, "L").save(src)
    out = tmp_path / "res"
    args = ["compare", str(src), "-k", "sobel", "--save-results", str(out), "--raw-results"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "g-convolve.tif", "g-correlate-rot180.tif", "g-correlate.tif"
    ]  # fmt: skip
    img = arr.astype(np.float32) / 255
    k = load_kernel("sobel")
    for name, expected in (
        ("convolve", convolve(img, k)),
        ("correlate", correlate(img, k)),
        ("correlate-rot180", correlate(img, k.rotated())),
    ):
        with PILImage.open(out / f"g-{name}.tif") as saved:
            assert saved.mode == "F"
            values = np.asarray(saved)
        assert values.min() < 0  # signed: not mapped into 0..1
        np.testing.assert_allclose(values, expected, atol=1e-6)
    result = CliRunner().invoke(main, ["compare", str(src), "-k", "sobel", "--raw-results"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --raw-results goes with --save-results DIR"


def test_kernel_cell_numbers_shrink_to_fit_or_are_left_out():
    from PIL import Image, ImageDraw

    from convcli.panel import _fitting_number, _font

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font(10)
    full = draw.textlength("0.00739", font=font)
    assert _fitting_number(draw, 0.0073941, full + 1, font) == "0.00739"
    short = _fitting_number(draw, 0.0073941, full - 1, font)
    assert short in ("0.0074", "0.007") and draw.textlength(short, font=font) <= full - 1
    assert _fitting_number(draw, 0.0073941, 1, font) == ""


# -- compare by strips -------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 7),
    channels=st.sampled_from([1, 2, 3, 4]),
    depth=st.sampled_from(["8", "16", "float"]),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 4)),
    policy=st.sampled_from(["clip", "offset", "abs", "rescale"]),
    mode=st.sampled_from(["reflect", "constant", "mirror", "wrap", "nearest"]),
    alpha=st.sampled_from(["premultiply", "plain"]),
    precision=st.sampled_from(["float32", "float64"]),
    strip=st.sampled_from([16, 48, 128]),
    workers=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_compare_by_strips_gives_the_same_numbers_and_verdict(
    height, width, channels, depth, shape, policy, mode, alpha, precision, strip, workers, seed
):
    from convcli.compare import compare_samples
    from convcli.image_io import Samples, unit_float

    rng = np.random.default_rng(seed)
    if depth == "8":
        samples = rng.integers(0, 256, (height, width, channels)).astype(np.uint8)
    elif depth == "16":
        samples = rng.integers(0, 65536, (height, width, channels)).astype(np.uint16)
    else:
        samples = rng.uniform(-0.5, 1.5, (height, width, channels)).astype(np.float32)
    weights = rng.normal(size=shape)
    if rng.random() < 0.3:
        weights = weights + weights[::-1, ::-1]  # symmetric ones too
    kernel = Kernel(weights)
    options = dict(backend="direct", mode=mode, cval=0.2, dtype=precision, depth=depth,
                   range_policy=policy, alpha=alpha)  # fmt: skip
    if precision == "float64" and depth != "float":  # float64 from the decoded integers on
        values = samples / {"8": 255.0, "16": 65535.0}[depth]
    else:
        values = unit_float(samples, depth)
    whole = compare(values, kernel, **options)
    strips = compare_samples(
        Samples(samples, {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels], depth), kernel,
        strip_rows=strip, workers=workers, **options,
    )  # fmt: skip
    assert strips.to_dict() == whole.to_dict()
    assert strips.conv_vs_negated_corr == whole.conv_vs_negated_corr
    assert strips.conv is None and strips.corr is None and strips.flip is None


def test_compare_by_strips_on_fft_agrees_in_the_verdict():
    from convcli.compare import compare_samples
    from convcli.image_io import Samples, unit_float

    rng = np.random.default_rng(3)
    samples = rng.integers(0, 256, (300, 80, 3)).astype(np.uint8)
    for kernel, verdict in ((builtin_kernel("gaussian", sigma=3), "equal"),
                            (builtin_kernel("emboss"), "different")):  # fmt: skip
        whole = compare(unit_float(samples, "8"), kernel, backend="fft")
        strips = compare_samples(Samples(samples, "RGB", "8"), kernel, backend="fft",
                                 strip_rows=64)  # fmt: skip
        assert whole.verdict == strips.verdict == verdict
        assert abs(whole.conv_vs_corr.max_abs - strips.conv_vs_corr.max_abs) < 1e-5


@pytest.mark.parametrize(
    ("channels", "policy", "alpha", "kernel"),
    [
        (3, "offset", "premultiply", "emboss"),
        (4, "rescale", "premultiply", "sobel:axis=x"),
        (2, "clip", "plain", "[1 2; 3 4]"),
        (1, "rescale", "premultiply", "gaussian:sigma=2"),
    ],
)
def test_the_panel_from_strips_is_the_whole_image_panel(channels, policy, alpha, kernel):
    from convcli.compare import compare_samples
    from convcli.image_io import Samples, unit_float
    from convcli.panel import PanelViews, render_panel

    rng = np.random.default_rng(5)
    samples = rng.integers(0, 256, (203, 150, channels)).astype(np.uint8)
    k = load_kernel(kernel)
    stored = Samples(samples, {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels], "8")
    options = dict(backend="direct", range_policy=policy, alpha=alpha, depth="8")
    whole = compare(unit_float(samples, "8"), k, **options)
    views = PanelViews(stored, policy, alpha)
    strips = compare_samples(stored, k, strip_rows=32, workers=2, visit=views, **options)
    expected = np.asarray(render_panel(whole, unit_float(samples, "8"), display_policy=policy))
    np.testing.assert_array_equal(np.asarray(views.render(strips)), expected)


# -- issue 11: verdicts that never depend on the backend ---------------------------------------

BACKENDS = ["direct", "fft", "auto"]
PHOTO = np.asarray(PILImage.open(ROOT / "sample_images" / "coffee.jpg"), np.float32)[::4, ::4] / 255


def _nudged_gaussian(eps: float) -> Kernel:
    """Gaussian sigma=8 (49x49) with +eps / -eps on the centre's two horizontal neighbours."""
    w = builtin_kernel("gaussian", sigma=8).weights.copy()
    c = w.shape[0] // 2
    w[c, c - 1] += eps
    w[c, c + 1] -= eps
    return Kernel(w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_reproducer_is_different_on_every_backend(backend):
    k = _nudged_gaussian(1.5e-4)
    assert k.symmetry.value == "asymmetric"
    r = compare(PHOTO, k, backend=backend)
    assert r.verdict == "different", r.explanation
    # the difference is computed with the 1x3 difference kernel [3e-4, 0, -3e-4] (direct,
    # whatever --backend), not as conv - corr: the same number on every backend
    assert r.difference_plan.backend == "direct"
    reference = compare(PHOTO, k, backend="direct")
    assert r.conv_vs_corr.max_abs == reference.conv_vs_corr.max_abs
    assert r.conv_vs_corr.max_abs > 1000 * r.difference_tolerance
    # and it is conv - corr: the two results computed apart agree with it
    np.testing.assert_allclose(r.diff, r.conv - r.corr, atol=1e-6)
    assert r.conv_vs_corr.differing_pixels > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps", [1e-9, 1e-7, 1e-5, 1e-3])
def test_near_symmetric_kernels_are_different_everywhere(backend, eps):
    for base in (builtin_kernel("gaussian", sigma=1.5), builtin_kernel("sobel", axis="x")):
        w = base.weights.copy()
        w[0, 1] += eps * np.abs(w).max()  # one weight moved off its mirror's value
        k = Kernel(w)
        assert k.symmetry.value == "asymmetric"
        r = compare(IMG, k, backend=backend)
        assert r.verdict == "different", (eps, base.name, r.explanation)
        assert r.verdict == compare(IMG, k, backend="direct").verdict


@pytest.mark.parametrize("backend", BACKENDS)
def test_rounding_noise_is_never_different(backend):
    # kernels symmetric in exact arithmetic whose float weights carry rounding: a composition
    # (sums in another order), a normalized integer kernel, and an exactly symmetric one
    from convcli.algebra import compose

    kernels = [
        compose([builtin_kernel("gaussian", sigma=1.3), builtin_kernel("box", size=3)]),
        Kernel(np.array([[1, 3, 1], [3, 7, 3], [1, 3, 1]]) / 23.0),
        builtin_kernel("log", sigma=2),
    ]
    for k in kernels:
        assert k.symmetry.value == "symmetric"
        r = compare(PHOTO, k, backend=backend)
        assert r.verdict == "equal", r.explanation
        assert r.conv_vs_corr.max_abs == 0.0  # the difference kernel is 0: no arithmetic
        assert r.conv_vs_corr.differing_pixels == 0


def _top_left(weights) -> np.ndarray:
    w = np.zeros((5, 5))
    w[:3, :3] = weights
    return w


def test_symmetry_about_an_explicit_origin(tmp_path):
    sym = Kernel(_top_left([[1, 2, 3], [4, 9, 4], [3, 2, 1]]), origin=(1, 1))
    anti = Kernel(_top_left([[1, 2, 0], [4, 0, -4], [0, -2, -1]]), origin=(1, 1))
    assert sym.symmetry.value == "symmetric" and anti.symmetry.value == "antisymmetric"
    # shifted the same weights are not symmetric about their origin
    assert Kernel(sym.weights, origin=(2, 2)).symmetry.value == "asymmetric"
    for backend in BACKENDS:
        assert compare(IMG, sym, backend=backend).verdict == "equal"
        assert compare(IMG, anti, backend=backend).verdict == "negated"
    flat = np.full((12, 14), 0.5, np.float32)
    r = compare(flat, anti)  # both ~0: the kernel's class decides, as the README says
    assert r.verdict == "negated" and "both hold" in r.explanation
    # kernels show, compose and the panel use the same definition
    path = tmp_path / "k.txt"
    rows = "\n".join(" ".join(f"{v:g}" for v in row) for row in sym.weights)
    path.write_text("# origin: 1,1\n" + rows + "\n")
    out = CliRunner().invoke(main, ["kernels", "show", str(path)])
    assert out.exit_code == 0, out.output
    assert "convolution == correlation" in out.stdout
    r = compare(IMG, sym)
    assert panel_layout(r, IMG).banner[1].startswith("the kernel is point-symmetric")
    from convcli.algebra import compose

    assert compose([sym, sym]).symmetry.value == "symmetric"


@pytest.mark.parametrize("backend", BACKENDS)
def test_verdict_matrix_on_every_backend(backend):
    for specs, verdict in ((EQUAL, "equal"), (NEGATED, "negated"), (DIFFERENT, "different")):
        for spec in specs:
            for img in (IMG, PHOTO):
                r = compare(img, load_kernel(spec), backend=backend)
                assert r.verdict == verdict, (spec, backend, r.explanation)


def test_float64_reaches_the_statistics():
    from convcli.compare import compare_samples
    from convcli.filtering import correlate
    from convcli.image_io import Samples

    samples = np.random.default_rng(4).integers(0, 256, (40, 30, 3)).astype(np.uint8)
    k = load_kernel("emboss")
    r = compare_samples(Samples(samples, "RGB", "8"), k, backend="direct", dtype="float64",
                        keep=True)  # fmt: skip
    assert r.conv.dtype == np.float64 and r.precision == "float64"
    exact = samples / 255.0  # float64 from the decoded integers, not float32 widened
    np.testing.assert_array_equal(r.corr, correlate(exact, k, backend="direct", dtype="float64"))
    assert r.conv_vs_corr.max_abs == np.abs(r.diff).max()
    widened = samples.astype(np.float32) / np.float32(255)
    assert not np.array_equal(r.corr, correlate(widened.astype(np.float64), k, backend="direct",
                                                dtype="float64"))  # fmt: skip


# -- the panel on real photos --------------------------------------------------------------------


def test_the_loupe_sits_on_the_known_region():
    img = np.full((700, 900, 3), 0.5, np.float32)
    img[400:460, 600:680] = RNG.random((60, 80, 3))  # the only texture: emboss differs there
    r = compare(img, load_kernel("emboss"), backend="direct")
    layout = panel_layout(r, img)
    x, y, w, h = layout.crop
    assert (w, h) == (160, 160)
    assert x <= 600 and x + w >= 680 and y <= 400 and y + h >= 460
    arr = np.asarray(render_panel(r, img))
    # the loupe's heat map is at full resolution (2x here): its texture fills the middle
    x0, y0, x1, y1 = layout.crop_box(3)
    heat_crop = arr[y0:y1, x0:x1]
    assert heat_crop.shape[:2] == (320, 320)
    inside = heat_crop[2 * (400 - y) : 2 * (460 - y), 2 * (600 - x) : 2 * (680 - x)]
    assert len(np.unique(inside.reshape(-1, 3), axis=0)) > 50
    assert (heat_crop[: 2 * (400 - y) - 4] == HEAT_ZERO).all()  # flat above: no difference
    # the region is outlined on the input tile
    mx0, my0, mx1, my1 = layout.marker()
    assert tuple(arr[my0, (mx0 + mx1) // 2]) == (255, 0, 255)
    # an explicit --crop region is used as given
    assert panel_layout(r, img, crop=(10, 20, 30, 40)).crop == (10, 20, 30, 40)


def test_the_proof_is_visible():
    r = compare(PHOTO, load_kernel("emboss"), backend="direct")
    layout = panel_layout(r, PHOTO)
    assert layout.banner == ("DIFFERENT: convolution != correlation",
                             "the kernel is asymmetric about its origin (K != rot180 K, "
                             "K != -rot180 K)")  # fmt: skip
    arr = np.asarray(render_panel(r, PHOTO)).astype(int)
    banner = arr[12:40, 12:300]
    assert ((banner[..., 0] > 150) & (banner[..., 1] < 80)).any()  # large red letters
    # the display gain in words
    assert layout.labels[3].startswith("|conv - corr| ")
    assert layout.labels[3].endswith(("for visibility", "to fit the scale"))
    # the flip row: correlate(I, rot180 K) and its difference from conv at the same gain,
    # where rounding (< 1e-6) is shown as 0
    assert layout.flip_labels[0] == "correlate(I, rot180 K)"
    assert r.conv_vs_flipped_corr.max_abs < 1e-5
    assert (_region(arr, layout.content_box(5)) == HEAT_ZERO).all()
    shown = _region(arr, layout.content_box(4))
    assert shown.std() > 20
    assert np.abs(shown - _region(arr, layout.content_box(1))).max() <= 1
    for verdict, colour in (("equal", "gaussian:sigma=1"), ("negated", "sobel")):
        r = compare(PHOTO, load_kernel(colour))
        assert panel_layout(r, PHOTO).banner[0].startswith(verdict.upper())


def test_cli_crop_and_its_errors(tmp_path):
    src = tmp_path / "in.png"
    PILImage.fromarray((RNG.random((90, 400, 3)) * 255).astype(np.uint8)).save(src)
    panel = tmp_path / "p.png"
    args = ["compare", str(src), "-k", "emboss", "-o", str(panel)]
    result = CliRunner().invoke(main, [*args, "--crop", "5,6,50,40"])
    assert result.exit_code == 0, result.output
    with PILImage.open(panel) as im:
        assert im.size[1] > 600  # the loupe row is there
    for bad, message in (("5,6,50", "expected X,Y,W,H"), ("390,6,50,40", "not inside the 400x90")):
        result = CliRunner().invoke(main, [*args, "--crop", bad])
        assert result.exit_code == 2
        line = result.stderr.strip()
        assert line.startswith("Error: ") and message in line and "\n" not in line
    result = CliRunner().invoke(main, ["compare", str(src), "-k", "emboss", "--crop", "1,1,2,2"])
    assert result.exit_code == 2 and "--crop goes with -o PANEL" in result.stderr


@pytest.mark.parametrize("raw", [False, True])
def test_saved_results_are_streamed_and_as_apply_writes(tmp_path, raw):
    from convcli.filtering import correlate
    from convcli.image_io import read_samples

    arr = (RNG.random((130, 70, 3)) * 255).astype(np.uint8)
    src = tmp_path / "g.png"
    PILImage.fromarray(arr).save(src)
    out = tmp_path / "res"
    args = ["compare", str(src), "-k", "emboss", "--save-results", str(out), "--json"]
    result = CliRunner().invoke(main, args + (["--raw-results"] if raw else []))
    assert result.exit_code == 0, result.output
    k = load_kernel("emboss")
    if raw:
        img = arr.astype(np.float32) / 255
        assert len(list(out.iterdir())) == 9
        for c, band in enumerate("RGB"):
            saved = read_samples(out / f"g-correlate-{band}.tif", lazy=False).samples[..., 0]
            np.testing.assert_array_equal(saved, correlate(img, k, backend="direct")[..., c])
        return
    for name, op in (("convolve", "convolve"), ("correlate", "correlate")):
        applied = tmp_path / f"{op}.png"
        done = CliRunner().invoke(main, ["apply", str(src), "-k", "emboss", "--op", op,
                                         "--backend", "direct", "-o", str(applied)])  # fmt: skip
        assert done.exit_code == 0, done.output
        with PILImage.open(out / f"g-{name}.png") as a, PILImage.open(applied) as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(("channels", "policy"), [(3, "clip"), (4, "rescale"), (1, "offset")])
def test_the_panel_with_its_loupe_from_strips_is_the_whole_image_panel(channels, policy):
    from convcli.compare import compare_samples
    from convcli.image_io import Samples, unit_float
    from convcli.panel import PanelViews

    rng = np.random.default_rng(8)
    samples = rng.integers(0, 256, (347, 421, channels)).astype(np.uint8)  # shown reduced
    stored = Samples(samples, {1: "L", 3: "RGB", 4: "RGBA"}[channels], "8")
    k = load_kernel("emboss")
    options = dict(backend="direct", range_policy=policy, depth="8")
    whole = compare(unit_float(samples, "8"), k, **options)
    views = PanelViews(stored, policy, "premultiply")
    strips = compare_samples(stored, k, strip_rows=48, workers=2, visit=views, **options)
    expected = render_panel(whole, unit_float(samples, "8"), display_policy=policy)
    assert views.layout(strips).crop == panel_layout(whole, unit_float(samples, "8")).crop
    assert views.layout(strips).crop is not None
    np.testing.assert_array_equal(np.asarray(views.render(strips)), np.asarray(expected))


def test_saved_results_are_all_or_nothing(tmp_path):
    src = tmp_path / "in.png"
    PILImage.fromarray((RNG.random((40, 30, 3)) * 255).astype(np.uint8)).save(src)
    out = tmp_path / "res"
    out.mkdir()
    (out / "in-correlate.png").mkdir()  # the second file cannot be written
    result = CliRunner().invoke(main, ["compare", str(src), "-k", "emboss", "--save-results",
                                       str(out)])  # fmt: skip
    assert result.exit_code != 0
    line = result.stderr.strip()
    assert line.startswith("Error: ") and "\n" not in line and "in-correlate.png" in line
    assert sorted(p.name for p in out.iterdir()) == ["in-correlate.png"]  # nothing else left


@pytest.mark.parametrize("raw", [True, False])
def test_save_results_stops_cleanly_when_the_input_fails_midway(tmp_path, raw):
    # a float TIFF whose strip 30 (rows 960-991) is damaged: the saved float results are
    # TIFFs written on a thread of their own, which used to wait forever for an end marker
    # it had already taken (the command hung; Ctrl-C then left .part files behind)
    import subprocess
    import sys

    import tifffile

    rng = np.random.default_rng(3)
    values = rng.uniform(0, 1, (1500, 40)).astype(np.float32)
    src = tmp_path / "mid.tif"
    tifffile.imwrite(src, values, rowsperstrip=32, compression="zlib")
    with tifffile.TiffFile(src) as tif:
        start = tif.pages.first.dataoffsets[30]
    data = bytearray(src.read_bytes())
    data[start : start + 8] = b"\xff" * 8
    src.write_bytes(bytes(data))
    out = tmp_path / "res"
    args = ["compare", str(src), "-k", "emboss", "--save-results", str(out)]
    args += ["--raw-results"] if raw else []
    done = subprocess.run(
        [sys.executable, "-m", "convcli", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: ") and "rows 960-991" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []
