"""--verify: the result on a second backend, against the rounding bound; injected faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from convcli import FilterOptions, from_array, load_kernel, write_image
from convcli.backends import direct, fft
from convcli.cli import main
from convcli.image_io import Samples
from convcli.verify import LEVEL_TOLERANCE, verify_samples, written_levels


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:90, 0:120]
    base = 0.5 + 0.3 * np.sin(xx / 9)[..., None] * np.cos(yy / 7)[..., None]
    pixels = np.clip(base + rng.normal(0, 0.1, (90, 120, 3)), 0, 1)
    path = tmp_path / "photo.png"
    write_image(from_array(np.round(pixels * 255) / 255, depth="8"), path)
    return path


def _stored(seed: int = 1, depth: str = "8") -> Samples:
    rng = np.random.default_rng(seed)
    if depth == "float":
        return Samples(rng.normal(0, 2, (40, 50, 1)).astype(np.float32), "L", "float")
    return Samples(rng.integers(0, 256, (40, 50, 3)).astype(np.uint8), "RGB", "8")


@pytest.mark.parametrize("spec", ["gaussian:sigma=2", "emboss", "sobel:axis=y", "motion:length=9"])
@pytest.mark.parametrize("backend", ["direct", "fft"])
def test_backends_agree_within_the_bound(spec, backend):
    check = verify_samples(_stored(), [load_kernel(spec)], FilterOptions(backend=backend))
    assert check.backend == backend
    assert check.other == ("fft" if backend == "direct" else "direct")
    assert check.ok
    assert 0 < check.max_abs <= check.tolerance  # float32 rounding: not zero, within the bound
    assert check.max_levels is not None and check.max_levels <= LEVEL_TOLERANCE


def test_float_output_is_compared_in_float_only():
    stored = _stored(depth="float")
    check = verify_samples(stored, [load_kernel("emboss")], FilterOptions(backend="direct"))
    assert check.depth == "float" and check.max_levels is None
    assert check.ok and check.max_abs <= check.tolerance
    # the bound scales with the input's largest magnitude (about 8 here, not 1)
    small = verify_samples(_stored(), [load_kernel("emboss")], FilterOptions(backend="direct"))
    assert check.tolerance > 4 * small.tolerance


def test_a_chain_of_kernels_adds_the_bounds():
    one = verify_samples(_stored(), [load_kernel("emboss")], FilterOptions(backend="direct"))
    two = verify_samples(
        _stored(), [load_kernel("emboss"), load_kernel("emboss")], FilterOptions(backend="direct")
    )
    # the second emboss acts on results up to sum|K| = 9 times larger
    gain = float(np.abs(load_kernel("emboss").weights).sum())
    assert gain == 9
    assert two.tolerance == pytest.approx(one.tolerance * (1 + gain))
    assert two.ok


def _flip_separable(monkeypatch):
    """A direct backend whose two-pass (rank-1) path flips the kernel (as in the probe's
    separable-path test)."""
    real, real_samples = direct.correlate, direct.correlate_samples

    def flipped_when_separable(image, kernel, mode, cval, **kw):
        if kernel.separable:
            kernel = kernel.rotated()
        return real(image, kernel, mode, cval, **kw)

    def flipped_samples_when_separable(samples, kernel, mode, cval, **kw):  # the fused path
        if kernel.separable:
            kernel = kernel.rotated()
        return real_samples(samples, kernel, mode, cval, **kw)

    monkeypatch.setattr(direct, "correlate", flipped_when_separable)
    monkeypatch.setattr(direct, "correlate_samples", flipped_samples_when_separable)


def test_a_fault_in_the_separable_path_is_caught(monkeypatch):
    _flip_separable(monkeypatch)
    check = verify_samples(_stored(), [load_kernel("sobel:axis=x")], FilterOptions("convolve",
                           backend="direct"))  # fmt: skip
    assert not check.ok
    assert check.max_abs > 100 * check.tolerance
    assert check.max_levels is not None and check.max_levels > LEVEL_TOLERANCE
    assert "DISAGREE" in check.describe()
    # a non-separable kernel does not go through the faulty path: still fine
    assert verify_samples(_stored(), [load_kernel("emboss")], FilterOptions(backend="direct")).ok


def test_a_small_fft_error_beyond_the_bound_is_caught(monkeypatch):
    real = fft.correlate

    def off_by_a_little(image, kernel, mode, cval, **kw):
        return real(image, kernel, mode, cval, **kw) + np.float32(2e-3)

    monkeypatch.setattr(fft, "correlate", off_by_a_little)
    check = verify_samples(_stored(), [load_kernel("emboss")], FilterOptions(backend="fft"))
    assert check.backend == "fft" and not check.ok
    assert check.max_abs == pytest.approx(2e-3, rel=1e-2)


def test_cli_apply_verify_passes_and_reports_with_verbose(photo, tmp_path):
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        main, ["apply", str(photo), "-k", "emboss", "-o", str(out), "--verify", "-v"]
    )
    assert result.exit_code == 0, result.output
    assert "verify: direct vs fft agree: float max |diff|" in result.stderr
    assert out.exists()
    quiet = CliRunner().invoke(main, ["blur", str(photo), "-o", str(out), "--verify"])
    assert quiet.exit_code == 0 and "verify" not in quiet.stderr


def test_cli_apply_verify_with_an_injected_fault_exits_1_and_writes_nothing(
    photo, tmp_path, monkeypatch
):
    _flip_separable(monkeypatch)
    out = tmp_path / "gx.png"
    result = CliRunner().invoke(
        main,
        ["apply", str(photo), "-k", "sobel:axis=x", "--backend", "direct", "--range", "offset",
         "-o", str(out), "--verify"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {photo}: verify: direct vs fft DISAGREE")
    assert "nothing written" in result.stderr and "Traceback" not in result.output
    assert not out.exists()
    # without --verify the same fault goes unnoticed (that is what --verify is for)
    plain = CliRunner().invoke(
        main, ["apply", str(photo), "-k", "sobel:axis=x", "--backend", "direct", "-o", str(out)]
    )
    assert plain.exit_code == 0 and out.exists()


def test_cli_verify_refuses_stdin(photo):
    result = CliRunner().invoke(
        main, ["apply", "-", "-k", "box", "-o", "x.png", "--verify"], input=photo.read_bytes()
    )
    assert result.exit_code == 2
    assert "Error: --verify needs an input file, not stdin" in result.stderr


def test_batch_verify_goes_in_the_report_and_a_fault_fails_the_image(photo, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(photo.read_bytes())
    report = tmp_path / "run.json"
    args = ["batch", str(src), "-o", str(tmp_path / "out"), "-k", "sobel:axis=x", "--jobs", "1",
            "--backend", "direct", "--verify", "--report", str(report), "-q"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    files = json.loads(report.read_text())["files"]
    assert files[0]["status"] == "processed"
    assert files[0]["verify"]["ok"] is True
    assert files[0]["verify"]["other_backend"] == "fft"
    assert files[0]["verify"]["float_max_abs"] <= files[0]["verify"]["float_tolerance"]

    _flip_separable(monkeypatch)  # --jobs 1 runs in this process, so the fault applies
    args[3] = str(tmp_path / "out2")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    files = json.loads(report.read_text())["files"]
    assert files[0]["status"] == "failed"
    assert files[0]["verify"]["ok"] is False
    assert "DISAGREE" in files[0]["reason"]
    assert not (tmp_path / "out2" / "a.png").exists()


def test_apply_json_reports_the_run_and_the_verify_check(photo, tmp_path):
    import json

    out = tmp_path / "j.png"
    result = CliRunner().invoke(
        main, ["apply", str(photo), "-k", "emboss", "--verify", "--json", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["output"] == str(out) and out.is_file()
    assert data["steps"][0]["kernel"] == "emboss" and data["steps"][0]["backend"] in (
        "direct",
        "fft",
    )
    assert (
        data["verify"]["ok"] is True
        and data["verify"]["other_backend"] != data["verify"]["backend"]
    )
    assert data["verify"]["float_max_abs"] <= data["verify"]["float_tolerance"]
    plain = CliRunner().invoke(
        main, ["apply", str(photo), "-k", "emboss", "--json", "-o", str(out)]
    )
    assert json.loads(plain.stdout)["verify"] is None
    refused = CliRunner().invoke(
        main, ["apply", str(photo), "-k", "box", "--json", "-o", "-", "--format", "png"]
    )
    assert refused.exit_code == 2 and "--json prints on stdout" in refused.stderr


# -- alpha: what a viewer sees ------------------------------------------------------------------


def test_written_levels_with_alpha_compare_what_a_viewer_sees():
    a = np.zeros((1, 4, 4), np.uint8)
    a[0] = [[10, 20, 30, 0], [100, 100, 100, 255], [100, 100, 100, 1], [50, 50, 50, 128]]
    b = a.copy()
    b[0, 0, :3] = [255, 0, 255]  # another colour under alpha 0: never seen
    assert written_levels(a, b, "8", alpha=True) == (0.0, 0.0)
    assert written_levels(a, b, "8", alpha=False)[0] == 245  # (as samples, it differs)
    b[0, 2, :3] = [0, 255, 0]  # under alpha 1 of 255: at most one level over any background
    assert written_levels(a, b, "8", alpha=True)[0] == 1
    b[0, 1, 0] = 103  # opaque: seen as it is, over black and over white
    assert written_levels(a, b, "8", alpha=True)[0] == 3
    b[0, 3, 3] = 132  # alpha counts on its own too
    largest, mean = written_levels(a, b, "8", alpha=True)
    assert largest == 4 and mean > 0


def _cutout(depth: str) -> Samples:
    """A photo-like RGBA image whose left half is fully transparent (random colour under it)."""
    rng = np.random.default_rng(8)
    top = 255 if depth == "8" else 65535
    samples = rng.integers(0, top + 1, (40, 50, 4))
    samples[..., 3] = top
    samples[:, :25, 3] = 0
    samples[:, 25:27, 3] = rng.integers(1, 5, (40, 2))  # a soft edge
    return Samples(samples.astype(np.uint8 if depth == "8" else np.uint16), "RGBA", depth)


@pytest.mark.parametrize("depth", ["8", "16"])
@pytest.mark.parametrize("spec", ["gaussian:sigma=2", "sharpen"])
@pytest.mark.parametrize("backend", ["direct", "fft"])
def test_a_cutout_verifies_on_both_backends(depth, spec, backend):
    # the FFT's float noise (~1e-9) under alpha 0 used to be divided into colours of up to
    # 255 or 65535 levels where direct wrote 0: "DISAGREE" on a correct result
    check = verify_samples(_cutout(depth), [load_kernel(spec)], FilterOptions(backend=backend))
    assert check.ok, check.describe()
    assert check.max_levels is not None and check.max_levels <= LEVEL_TOLERANCE


def test_cli_blur_verify_on_the_cutout_sample_agrees(tmp_path):
    # it exited 1 with "as written: max 255 level(s)" from colour under alpha 0, although the
    # float results differed by 4e-7
    cutout = Path(__file__).resolve().parent.parent / "sample_images" / "chelsea_cutout.png"
    out = tmp_path / "cutout.png"
    result = CliRunner().invoke(main, ["blur", str(cutout), "--verify", "-v", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "verify: direct vs fft agree: float max |diff|" in result.stderr
    assert out.is_file()
