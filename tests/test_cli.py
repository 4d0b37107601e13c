"""The CLI through click's CliRunner: results, exit codes and exact error lines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from convcli.cli import main
from convcli.filtering import convolve, correlate
from convcli.kernels import Kernel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(5)
    arr = (rng.random((21, 17, 3)) * 255).astype(np.uint8)
    path = tmp_path / "in.png"
    PILImage.fromarray(arr, "RGB").save(path)
    return path, arr


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def expected_8bit(arr, kernel, op="convolve", **kw):
    f = convolve if op == "convolve" else correlate
    out = f(arr.astype(np.float32) / 255, kernel, dtype=np.float64, **kw)
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def test_apply_convolve_and_correlate_differ_exactly_by_the_flip(runner, photo, tmp_path):
    path, arr = photo
    emboss = Kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    spec = "3x3: -2,-1,0 -1,1,1 0,1,2"
    for op in ("convolve", "correlate"):
        out = tmp_path / f"{op}.png"
        result = run(runner, "apply", path, "-k", spec, "--op", op, "-o", out)
        assert result.exit_code == 0, result.output
        got = np.asarray(PILImage.open(out))
        want = expected_8bit(arr, emboss, op)
        assert np.abs(got.astype(int) - want).max() <= 1
    conv = np.asarray(PILImage.open(tmp_path / "convolve.png")).astype(int)
    corr = np.asarray(PILImage.open(tmp_path / "correlate.png")).astype(int)
    assert np.abs(conv - corr).max() > 10


def test_apply_several_kernels_in_sequence_and_verbose(runner, photo, tmp_path):
    path, arr = photo
    out = tmp_path / "out.png"
    result = run(
        runner,
        "apply",
        path,
        "-k",
        "box:size=3",
        "-k",
        "sharpen",
        "-o",
        out,
        "--verbose",
        "--backend",
        "fft",
    )
    assert result.exit_code == 0, result.output
    assert "fft [fft]" in result.output and "out of range and clipped" in result.output
    assert out.exists()


def test_blur_sharpen_edge_shortcuts(runner, photo, tmp_path):
    path, arr = photo
    for cmd, extra in (
        ("blur", ["--sigma", "1.5"]),
        ("blur", ["--box", "5"]),
        ("sharpen", []),
        ("sharpen", ["--sigma", "1", "--amount", "0.5"]),
        ("edge", []),
        ("edge", ["--operator", "laplacian"]),
    ):
        out = tmp_path / f"{cmd}.png"
        result = run(runner, cmd, path, "-o", out, *extra)
        assert result.exit_code == 0, result.output
        got = np.asarray(PILImage.open(out))
        assert got.shape == arr.shape and got.dtype == np.uint8
    blurred = np.asarray(PILImage.open(tmp_path / "blur.png")).astype(float)
    assert blurred.std() < arr.std()  # box 5 blur is smoother than noise


def test_output_equal_to_input_is_refused(runner, photo):
    path, _ = photo
    before = path.read_bytes()
    result = runner.invoke(main, ["blur", str(path), "-o", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: output '{path}' is the input file; refusing to overwrite it "
        "(use --in-place if you mean to)"
    )
    assert path.read_bytes() == before


def test_in_place(runner, photo):
    path, arr = photo
    result = runner.invoke(main, ["blur", str(path), "--in-place", "--box", "3"])
    assert result.exit_code == 0, result.output
    assert not np.array_equal(np.asarray(PILImage.open(path)), arr)
    assert [p.name for p in path.parent.iterdir()] == ["in.png"]  # no temporary files left


def test_missing_output_option(runner, photo):
    path, _ = photo
    result = runner.invoke(main, ["blur", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: missing -o/--output (or --in-place to overwrite the input)"
    )


def test_missing_input_file_names_it(runner, tmp_path):
    missing = tmp_path / "nope.png"
    result = runner.invoke(main, ["blur", str(missing), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 1
    line = result.output.strip()
    assert line.startswith("Error: ") and str(missing) in line and "\n" not in line
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.png").exists()


def test_unknown_kernel_is_a_usage_error(runner, photo, tmp_path):
    path, _ = photo
    result = runner.invoke(
        main, ["apply", str(path), "-k", "gausian", "-o", str(tmp_path / "o.png")]
    )
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "gausian" in result.output
    assert "gaussian" in result.output  # suggestion


def test_bad_kernel_file_names_file_and_line(runner, photo, tmp_path):
    path, _ = photo
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n4 5\n")
    result = runner.invoke(
        main, ["apply", str(path), "-k", str(bad), "-o", str(tmp_path / "o.png")]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad}:2")
    assert not (tmp_path / "o.png").exists()


def test_bad_boundary_mode(runner, photo, tmp_path):
    path, _ = photo
    result = runner.invoke(
        main, ["blur", str(path), "-o", str(tmp_path / "o.png"), "--boundary", "bogus"]
    )
    assert result.exit_code == 2
    assert result.output.startswith(
        "Error: boundary mode must be one of reflect, constant, nearest, mirror, wrap"
    )


def test_normalize_zero_sum_kernel_is_an_error_not_a_black_image(runner, photo, tmp_path):
    path, _ = photo
    out = tmp_path / "o.png"
    result = runner.invoke(
        main, ["apply", str(path), "-k", "sobel:axis=x", "--normalize", "-o", str(out)]
    )
    assert result.exit_code == 1
    assert "cannot normalize kernel" in result.output and "sum to 0" in result.output
    assert not out.exists()


def test_debug_shows_traceback(runner, tmp_path):
    result = runner.invoke(
        main, ["blur", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png"), "--debug"]
    )
    assert result.exit_code == 1
    assert result.exception is not None  # re-raised for the traceback


def test_existing_output_survives_a_failed_run(runner, photo, tmp_path):
    path, _ = photo
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    result = runner.invoke(main, ["apply", str(path), "-k", "sobel", "--normalize", "-o", str(out)])
    assert result.exit_code != 0
    assert out.read_bytes() == b"precious"


def test_kernels_list_and_show(runner):
    result = run(runner, "kernels", "list")
    assert result.exit_code == 0
    for name in ("gaussian", "box", "sobel", "laplacian", "motion", "emboss", "unsharp", "log"):
        assert name in result.output
    result = run(runner, "kernels", "show", "sobel:axis=x")
    assert result.exit_code == 0
    assert "antisymmetric" in result.output and "separable" in result.output
    result = run(runner, "kernels", "show", str(ROOT / "kernels" / "gaussian5x5_273.txt"))
    assert result.exit_code == 0
    assert "no (rank 3)" in result.output and "symmetric" in result.output


def test_every_command_has_help_with_an_example(runner):
    for args in (
        ["--help"],
        ["apply", "--help"],
        ["blur", "--help"],
        ["sharpen", "--help"],
        ["edge", "--help"],
        ["kernels", "--help"],
        ["kernels", "list", "--help"],
        ["kernels", "show", "--help"],
        ["kernels", "compose", "--help"],
        ["kernels", "export", "--help"],
        ["compare", "--help"],
        ["batch", "--help"],
        ["explain", "--help"],
        ["probe", "--help"],
    ):
        result = run(runner, *args)
        assert result.exit_code == 0
        assert "convcli " in result.output and "Example" in result.output


def test_python_dash_m(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "convcli", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert proc.returncode == 0 and "convcli" in proc.stdout


def test_stdin_to_stdout(runner, photo):
    path, arr = photo
    result = runner.invoke(
        main, ["blur", "-", "-o", "-", "--format", "png", "--box", "3"], input=path.read_bytes()
    )
    assert result.exit_code == 0, result.stderr
    import io

    out = np.asarray(PILImage.open(io.BytesIO(result.stdout_bytes)))
    assert out.shape == arr.shape
    box = Kernel(np.ones((3, 3)) / 9)
    assert np.abs(out.astype(int) - expected_8bit(arr, box)).max() <= 1


def test_verbose_says_what_auto_chose_and_why(runner, photo, tmp_path):
    path, _ = photo
    result = run(runner, "apply", path, "-k", "gaussian:sigma=1", "-o", tmp_path / "o.png", "-v")
    assert result.exit_code == 0
    assert "direct [separable] - 7x7 separable kernel: direct ~" in result.output
    assert "< fft ~" in result.output


def test_16bit_in_16bit_out_and_depth_override(runner, tmp_path):
    src = tmp_path / "g16.png"
    PILImage.fromarray(np.arange(35, dtype=np.uint16).reshape(5, 7) * 1800).save(src)
    run(runner, "blur", src, "-o", tmp_path / "o16.png", "--box", "3")
    with PILImage.open(tmp_path / "o16.png") as im:
        assert im.mode == "I;16"
    run(runner, "blur", src, "-o", tmp_path / "o8.png", "--box", "3", "--depth", "8")
    with PILImage.open(tmp_path / "o8.png") as im:
        assert im.mode == "L"


@pytest.mark.parametrize(
    "policy, words",
    [
        ("clip", "were out of range and clipped"),
        ("abs", "after taking absolute values, and clipped"),
        ("offset", "after adding half the range, and clipped"),
        ("rescale", "after stretching min..max (rounding only), and clipped"),
    ],
)
def test_verbose_range_line_says_what_the_policy_did(runner, photo, tmp_path, policy, words):
    path, _ = photo
    result = run(
        runner, "apply", path, "-k", "sobel", "-o", tmp_path / "o.png", "--range", policy, "-v"
    )
    assert result.exit_code == 0
    line = next(x for x in result.stderr.splitlines() if x.startswith(f"range {policy}:"))
    assert line.endswith(words)


def test_verbose_range_none_says_written_as_they_are(runner, photo, tmp_path):
    _, arr = photo
    grey = tmp_path / "grey.png"
    PILImage.fromarray(arr[:, :, 0], "L").save(grey)
    out = tmp_path / "o.tif"
    result = run(
        runner, "apply", grey, "-k", "laplacian", "-o", out, "--depth", "float", "--range", "none",
        "-v",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with PILImage.open(out) as back:
        assert back.mode == "F" and np.asarray(back).min() < 0  # signed values kept
    line = next(x for x in result.stderr.splitlines() if x.startswith("range none:"))
    assert line.endswith("written as they are (float output)")


def test_cval_outside_0_1_warns_about_the_scale(runner, photo, tmp_path):
    path, _ = photo
    result = run(
        runner, "apply", path, "-k", "box:size=5", "-o", tmp_path / "o.png",
        "--boundary", "constant", "--cval", "128",
    )  # fmt: skip
    assert result.exit_code == 0
    assert "Warning: --cval 128 is outside 0..1, the scale pixels are filtered on" in result.stderr
    result = run(
        runner, "apply", path, "-k", "box:size=5", "-o", tmp_path / "o2.png",
        "--boundary", "constant", "--cval", "0.5",
    )  # fmt: skip
    assert result.exit_code == 0 and "Warning" not in result.stderr


def test_kernels_that_could_overflow_float32_are_refused(runner, photo, tmp_path):
    path, _ = photo
    out = tmp_path / "o.png"
    result = run(runner, "apply", path, "-k", "[1e300 1e300]", "-o", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: the kernels' weights (sum of |weights| 2e+300 in all) could overflow float32 "
        "arithmetic; use --precision float64"
    )
    assert not out.exists()
    result = run(
        runner, "apply", path, "-k", "[1e30 1e30]", "-o", out, "--precision", "float64",
        "--range", "rescale",
    )  # fmt: skip
    assert result.exit_code == 0


def test_an_unexpected_file_error_is_one_line_not_a_traceback(runner, photo, tmp_path):
    path, _ = photo
    (tmp_path / "afile").write_text("not a folder")
    result = runner.invoke(
        main, ["compare", str(path), "-k", "emboss", "--save-results", str(tmp_path / "afile/sub")]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'afile/sub'}: Not a directory"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["-o", "x.xyz"], 2, "cannot tell the image format from 'x.xyz'"),
        (["-o", "-"], 2, "writing to standard output needs --format"),
        (["-o", "o.png", "--range", "none"], 2, "range policy 'none' is only for float output"),
        (["-o", "nodir/o.png"], 1, "nodir/o.png: output folder 'nodir' does not exist"),
    ],
)
def test_unwritable_outputs_are_refused_before_filtering(
    runner, photo, tmp_path, monkeypatch, extra, code, message
):
    import convcli.process

    def must_not_run(*args, **kwargs):
        raise AssertionError("filtered although the output could not be written")

    monkeypatch.setattr(convcli.process, "_check_float_range", must_not_run)
    monkeypatch.chdir(tmp_path)
    path, _ = photo
    result = runner.invoke(main, ["apply", str(path), "-k", "box", *extra])
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1


def test_convcli_alone_prints_help_on_stdout_and_exits_0():
    result = CliRunner().invoke(main, [], prog_name="convcli")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: convcli") and "Commands:" in result.stdout
    assert result.stderr == ""


def test_blur_refuses_sigma_with_box(tmp_path):
    src = tmp_path / "a.png"
    PILImage.new("RGB", (8, 8)).save(src)
    out = tmp_path / "b.png"
    result = CliRunner().invoke(
        main, ["blur", str(src), "--sigma", "2", "--box", "5", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: give --sigma (Gaussian) or --box (box filter), not both"
    assert not out.exists()
    assert CliRunner().invoke(main, ["blur", str(src), "--box", "5", "-o", str(out)]).exit_code == 0


def test_edge_log_takes_a_sigma(tmp_path):
    src = tmp_path / "a.png"
    rng = np.random.default_rng(8)
    PILImage.fromarray((rng.random((30, 26)) * 255).astype(np.uint8)).save(src)
    runner = CliRunner()
    out, ref = tmp_path / "e.png", tmp_path / "r.png"
    result = runner.invoke(
        main, ["edge", str(src), "--operator", "log", "--sigma", "3", "--gain", "1", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (
        runner.invoke(
            main, ["apply", str(src), "-k", "log:sigma=3", "--range", "abs", "-o", str(ref)]
        ).exit_code
        == 0
    )
    assert out.read_bytes() == ref.read_bytes()
    default = tmp_path / "d.png"
    assert (
        runner.invoke(
            main, ["edge", str(src), "--operator", "log", "--gain", "1", "-o", str(default)]
        ).exit_code
        == 0
    )
    assert default.read_bytes() != out.read_bytes()  # sigma 1.4 by default
    result = runner.invoke(main, ["edge", str(src), "--sigma", "3", "-o", str(out)])
    assert result.exit_code == 2 and "--sigma goes with --operator log" in result.stderr
    result = runner.invoke(
        main, ["edge", str(src), "--operator", "log", "--sigma", "-1", "-o", str(out)]
    )
    assert result.exit_code == 2 and "sigma must be > 0" in result.stderr


def test_edge_gain_makes_edges_visible_and_is_said(tmp_path):
    """The automatic gain: the magnitude's 99.5th percentile becomes white; --gain 1 is the
    raw magnitude; a --range turns it off; --verbose says which."""
    src = tmp_path / "a.png"
    y, x = np.mgrid[0:40, 0:50]
    smooth = (100 + 20 * np.sin(x / 4.0) + 10 * np.cos(y / 5.0)).astype(np.uint8)  # weak edges
    PILImage.fromarray(smooth).save(src)
    runner = CliRunner()
    auto, raw = tmp_path / "auto.png", tmp_path / "raw.png"
    result = runner.invoke(main, ["edge", str(src), "-o", str(auto), "-v"])
    assert result.exit_code == 0 and "edge gain x" in result.stderr
    assert "99.5th percentile" in result.stderr
    assert runner.invoke(main, ["edge", str(src), "-o", str(raw), "--gain", "1"]).exit_code == 0
    a = np.asarray(PILImage.open(auto)).astype(float)
    r = np.asarray(PILImage.open(raw)).astype(float)
    assert r.max() < 40  # the raw magnitude of weak edges is dark
    assert np.percentile(a, 99.5) >= 250 and (a >= 255).mean() <= 0.01  # p99.5 -> white
    gain = float(result.stderr.split("edge gain x")[1].split(":")[0])
    np.testing.assert_allclose(
        a[r < 20], np.clip(np.round(r[r < 20] * gain), 0, 255), atol=gain / 2 + 1
    )
    off = tmp_path / "off.png"
    assert runner.invoke(main, ["edge", str(src), "-o", str(off), "--range", "clip"]).exit_code == 0
    assert off.read_bytes() == raw.read_bytes()  # a range given: no automatic gain
    bad = runner.invoke(main, ["edge", str(src), "-o", str(off), "--gain", "0"])
    assert bad.exit_code == 2 and "must be > 0" in bad.stderr


def test_tiff_compression_for_one_file_and_for_batch(runner, tmp_path):
    import json

    import tifffile

    rng = np.random.default_rng(9)
    src = tmp_path / "in"
    src.mkdir()
    arr = (rng.random((30, 26, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(src / "a.tif", arr, photometric="rgb")
    PILImage.fromarray(arr).save(src / "b.png")
    default, zstd = tmp_path / "default.tif", tmp_path / "zstd.tif"
    assert run(runner, "blur", src / "a.tif", "-o", default).exit_code == 0
    result = run(runner, "blur", src / "a.tif", "-o", zstd, "--tiff-compression", "zstd")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(default) as d, tifffile.TiffFile(zstd) as z:
        assert d.pages.first.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert z.pages.first.compression == tifffile.COMPRESSION.ZSTD
        np.testing.assert_array_equal(z.pages.first.asarray(), d.pages.first.asarray())
    # batch: the TIFF outputs get it, the others keep their format; the report records it
    out, report = tmp_path / "out", tmp_path / "run.json"
    result = run(runner, "batch", src, "-o", out, "-k", "box", "--tiff-compression", "lzw",
                 "--report", report, "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out / "a.tif") as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.LZW
    with PILImage.open(out / "b.png") as im:
        assert im.format == "PNG"
    assert json.loads(report.read_text())["tiff_compression"] == "lzw"
    result = run(runner, "sharpen", src, "-o", tmp_path / "all/", "--format", "tiff",
                 "--tiff-compression", "packbits", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("a.tif", "b.tif"):
        with tifffile.TiffFile(tmp_path / "all" / name) as tif:
            assert tif.pages.first.compression == tifffile.COMPRESSION.PACKBITS


def test_tiff_compression_without_a_tiff_output_is_a_usage_error(runner, photo, tmp_path):
    path, _ = photo  # a PNG
    cases = [
        (["blur", path, "-o", tmp_path / "o.png", "--tiff-compression", "lzw"],
         f"Error: {tmp_path / 'o.png'}: --tiff-compression is for TIFF output, and this is "
         "PNG; write .tif or leave it out"),
        (["edge", path, "-o", "-", "--format", "jpeg", "--tiff-compression", "none"],
         "Error: -: --tiff-compression is for TIFF output, and this is JPEG; write .tif or "
         "leave it out"),
        (["batch", path.parent, "-o", tmp_path / "out", "-k", "box", "--format", "png",
          "--tiff-compression", "zstd"],
         "Error: --tiff-compression is for TIFF output, and --format is png"),
        (["apply", path, "-o", f"{tmp_path}/out/", "-k", "box", "--tiff-compression", "zstd"],
         "Error: --tiff-compression is for TIFF output, and none of the outputs is a TIFF "
         "(--format tiff makes them so)"),
    ]  # fmt: skip
    for args, line in cases:
        result = run(runner, *args)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == line
    bad = run(runner, "blur", path, "-o", tmp_path / "o.tif", "--tiff-compression", "jpeg")
    assert bad.exit_code == 2 and "'jpeg' is not one of 'deflate', 'lzw'" in bad.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_tiff_compression_completes_its_choices():
    import subprocess
    import sys

    words = "convcli blur x.png --tiff-compression "
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": "4",
           "_CONVCLI_COMPLETE": "bash_complete"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", "from convcli.cli import main; main(prog_name='convcli')"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.stdout.split() == [f"plain,{n}" for n in ("deflate", "lzw", "zstd", "packbits",
                                                          "none")]  # fmt: skip
