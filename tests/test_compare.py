"""convcli compare: verdicts, numbers, JSON, exit codes and the panel image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from convcli.cli import main
from convcli.compare import compare
from convcli.kernel_io import load_kernel
from convcli.kernels import Kernel
from convcli.panel import TILE, render_panel, tile_size

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
            # the identity behind everything: convolution is correlation with rot180(K)
            assert r.conv_vs_flipped_corr.max_abs <= r.tolerance
            assert r.conv_vs_flipped_corr.differing_pixels == 0


def test_numbers_are_what_they_say():
    k = load_kernel("emboss")
    r = compare(IMG, k, backend="direct", dtype="float64", range_policy="clip")
    diff = np.abs(r.conv - r.corr)
    assert r.conv_vs_corr.max_abs == pytest.approx(diff.max())
    assert r.conv_vs_corr.mean_abs == pytest.approx(diff.mean())
    q = lambda a: np.rint(np.clip(a, 0, 1) * 255)  # noqa: E731
    assert r.conv_vs_corr.differing_pixels == int((q(r.conv) != q(r.corr)).any(axis=2).sum())
    assert r.conv_vs_corr.psnr == pytest.approx(10 * np.log10(1 / np.mean(diff**2)))
    assert r.verdict == "different" and r.explanation.startswith("DIFFERENT - max |diff|")


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


def test_panel_layout():
    for shape in ((24, 31, 3), (600, 200, 4), (5, 7, 1)):
        img = RNG.random(shape).astype(np.float32)
        r = compare(img, load_kernel("emboss"), backend="direct")
        panel = render_panel(r, img)
        tw, th = tile_size(shape[0], shape[1])
        assert max(tw, th) == TILE  # big inputs shrink, tiny ones grow, for display only
        assert panel.width == 12 + 4 * (tw + 12)
        arr = np.asarray(panel).astype(int)
        top = 12 + 22
        for i in range(4):  # four tiles, each drawn (not background) and labelled above
            x = 12 + i * (tw + 12)
            tile = arr[top : top + th, x : x + tw]
            assert tile.shape == (th, tw, 3)
            label = arr[12 : 12 + 16, x : x + 80]
            assert (label < 100).any()  # dark label text
        # the input tile is the input, resized
        x0 = 12
        shown = arr[top : top + th, x0 : x0 + tw].mean()
        assert abs(shown / 255 - img[..., :3].mean()) < 0.05


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
    assert set(report) >= {
        "kernel",
        "backend",
        "boundary",
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
    assert report["conv_vs_flipped_corr"]["psnr"] is None  # identical: infinite PSNR
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
