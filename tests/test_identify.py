"""convcli identify: recover how an output was computed, from outputs made independently
(convcli's public filtering API plus numpy rounding, OpenCV, scipy), and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from convcli import Kernel, correlate, from_array, write_image
from convcli.cli import main
from convcli.identify import (
    OPERATIONS,
    RANGES,
    ROUNDINGS,
    Candidate,
    effective_kernel,
    identify,
)
from convcli.kernels import builtin_kernel

MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
#: 5x5, asymmetric (no operation hides another), mixed signs (the range policy shows),
#: fractions of a level (the rounding shows), sum 1.2 (normalizing shows); the weights sum
#: to 31, so no result is ever exactly halfway between two levels (no rounding ties)
WEIGHTS = np.array(
    [
        [1, 0, -2, 3, 1],
        [2, 5, 1, -1, 0],
        [0, 3, 9, 2, -3],
        [-1, 1, 4, 0, 2],
        [3, -2, 0, 1, 2],
    ],
    dtype=np.float64,
)
KERNEL = Kernel(WEIGHTS / (WEIGHTS.sum() / 1.2), name="test5x5")


def _image(h: int, w: int, channels: int = 3, seed: int = 3) -> np.ndarray:
    """Random 8-bit levels with some smooth structure (so flips and shifts all differ)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[..., None]
    noise = rng.integers(-60, 61, (h, w, channels))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _make(levels: np.ndarray, kernel: Kernel, cand: Candidate, ties: bool = False):
    """What a tool computing ``cand`` writes, made with convcli's public ``correlate`` on
    the kernel flipped and shifted by numpy, and numpy's mapping and rounding (not with
    identify's own code).  ``ties``: also return where the value before rounding is a
    rounding tie (x.5 to nearest, a whole number to truncate), where float noise decides."""
    w = kernel.weights / kernel.sum if cand.normalized else kernel.weights
    kh, kw = w.shape
    r, c = cand.origin
    flipped = {
        "correlate": (w, (r, c)),
        "convolve": (w[::-1, ::-1], (kh - 1 - r, kw - 1 - c)),
        "convolve-x": (w[:, ::-1], (r, kw - 1 - c)),
        "convolve-y": (w[::-1, :], (kh - 1 - r, c)),
    }[cand.operation]
    k = Kernel(flipped[0], origin=flipped[1])
    # the tool works on levels 0..255; convcli's cval is on 0..1
    raw = correlate(
        levels.astype(np.float64), k, mode=cand.boundary, cval=cand.cval * 255, dtype=np.float64
    )
    if cand.range == "abs":
        raw = np.abs(raw)
    elif cand.range == "offset":
        raw = raw + 127.5
    raw = np.clip(raw, 0, 255)
    out = np.floor(raw + 0.5) if cand.rounding == "nearest" else np.floor(raw + 1e-9)
    if not ties:
        return out.astype(np.uint8)
    frac = raw - np.floor(raw)
    edge = 0.5 if cand.rounding == "nearest" else 0.0
    tie = (np.abs(frac - edge) < 1e-6) | (np.abs(frac - edge - 1) < 1e-6) | (
        np.abs(frac - edge + 1) < 1e-6)  # fmt: skip
    return out.astype(np.uint8), tie & (raw > 0) & (raw < 255)


def _found(levels: np.ndarray, out: np.ndarray, kernel: Kernel = KERNEL):
    return identify(from_array(levels / 255.0, depth="8"), from_array(out / 255.0, depth="8"),
                    kernel)  # fmt: skip


CASES = [
    Candidate(op, origin, mode, cval, normalized, rng, rounding)
    for i, (op, mode) in enumerate((op, mode) for op in OPERATIONS for mode in MODES)
    for origin in [((0, 0), (2, 2), (4, 1), (1, 3))[i % 4]]
    for cval in [77 / 255 if mode == "constant" and i % 2 else 0.0]
    for normalized in [bool(i % 3 == 1)]
    for rng in [RANGES[i % 3]]
    for rounding in [ROUNDINGS[(i // 2) % 2]]
]


def test_the_cases_cover_every_value_of_every_dimension():
    for dim, values in [
        ("operation", OPERATIONS), ("boundary", MODES), ("range", RANGES),
        ("rounding", ROUNDINGS), ("normalized", (False, True)),
    ]:  # fmt: skip
        assert {getattr(c, dim) for c in CASES} == set(values), dim
    assert {c.cval for c in CASES if c.boundary == "constant"} == {0.0, 77 / 255}
    assert len({c.origin for c in CASES}) == 4


@pytest.mark.parametrize("cand", CASES, ids=lambda c: c.describe(KERNEL))
def test_identify_recovers_every_variant_exactly(cand):
    levels = _image(40, 52)  # small: searched exhaustively
    out = _make(levels, KERNEL, cand)
    found = _found(levels, out)
    assert found.verdict == "exact"
    # the answer, made independently, is the output (ties are real: abs == clip when no
    # result is negative, say), and the truth is among the equally good answers
    np.testing.assert_array_equal(_make(levels, KERNEL, found.best.candidate), out)
    dims = ["operation", "origin", "boundary", "normalized", "range", "rounding"]
    for dim in dims + (["cval"] if cand.boundary == "constant" else []):
        assert getattr(cand, dim) in found.equivalent[dim], dim
    assert found.equivalent["operation"] == [cand.operation]
    assert found.equivalent["origin"] == [cand.origin]
    assert found.runner_up is not None and found.runner_up.candidate != found.best.candidate


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example takes 0.3 s
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    op=st.sampled_from(OPERATIONS),
    origin=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    mode=st.sampled_from(MODES),
    cval_level=st.integers(0, 255),
    normalized=st.booleans(),
    policy=st.sampled_from(RANGES),
    rounding=st.sampled_from(ROUNDINGS),
    seed=st.integers(0, 2**16),
)
def test_identify_recovers_any_combination(
    op, origin, mode, cval_level, normalized, policy, rounding, seed
):
    cval = cval_level / 255 if mode == "constant" else 0.0
    cand = Candidate(op, origin, mode, cval, normalized, policy, rounding)
    levels = _image(36, 44, channels=1, seed=seed)
    out, ties = _make(levels, KERNEL, cand, ties=True)
    found = _found(levels, out)
    # exact, but where the truth's value is a rounding tie (x.5 after a normalized kernel and
    # an offset, say), which float noise decides either way
    again = _make(levels, KERNEL, found.best.candidate)
    assert np.all((again == out) | ties)
    assert found.verdict in ("exact", "fits")
    # every dimension of the truth explains the output as well as the best does
    for dim in ("operation", "origin", "boundary", "normalized", "range", "rounding"):
        assert getattr(cand, dim) in found.equivalent[dim], dim


@pytest.mark.parametrize(
    "cand",
    [
        Candidate("convolve", (2, 2), "mirror", rounding="truncate"),
        Candidate("correlate", (1, 3), "wrap", range="abs"),
        Candidate("convolve-y", (2, 2), "constant", 0.0, range="offset"),
        Candidate("convolve-x", (4, 0), "nearest", normalized=True),
    ],
    ids=lambda c: c.describe(KERNEL),
)
def test_identify_recovers_variants_from_sampled_rows_of_a_larger_image(cand):
    levels = _image(300, 220)
    found = _found(levels, _make(levels, KERNEL, cand))
    assert found.sampled_rows < 300  # the staged search ran on a sample of rows
    assert found.verdict == "exact"
    np.testing.assert_array_equal(_make(levels, KERNEL, found.best.candidate), _make(
        levels, KERNEL, cand))  # fmt: skip
    assert found.equivalent["operation"] == [cand.operation]
    assert found.equivalent["origin"] == [cand.origin]
    # the winner was confirmed on the whole image: every pixel counted
    assert found.best.interior.pixels + found.best.border.pixels == 300 * 220


def test_identify_a_shifted_and_truncated_output():
    # a tool that truncates and shifts its result by one pixel (as G'MIC does with even
    # kernels): correlate, then move the picture one pixel right and one down
    levels = _image(60, 70)
    k = builtin_kernel("emboss").scaled(1 / 3)
    raw = correlate(levels.astype(np.float64), k, mode="nearest", dtype=np.float64)
    out = np.floor(np.clip(raw, 0, 255) + 1e-9)
    shifted = np.empty_like(out)
    shifted[1:, 1:] = out[:-1, :-1]
    shifted[0, :] = out[0, :]
    shifted[:, 0] = shifted[:, 1]
    found = _found(levels, shifted.astype(np.uint8), k)
    best = found.best.candidate
    assert best.operation == "correlate"
    assert best.origin == (2, 2)  # one row and one column past the default (1, 1)
    assert best.rounding == "truncate"
    assert found.best.interior.max_diff == 0  # the interior is explained exactly
    assert found.to_dict()["best"]["origin_offset"] == [1, 1]


def test_identify_says_when_nothing_fits_and_what_is_closest():
    levels = _image(40, 40)
    rng = np.random.default_rng(9)
    unrelated = rng.integers(0, 256, levels.shape).astype(np.uint8)
    found = _found(levels, unrelated)
    assert found.verdict == "no fit"
    assert not found.best.fits
    assert found.best.candidate.operation in OPERATIONS  # the closest is still named
    assert found.to_dict()["verdict"] == "no fit"


def test_identify_tells_equivalent_operations_for_a_symmetric_kernel():
    levels = _image(40, 40)
    k = builtin_kernel("gaussian", sigma=1.0)
    out = _make(levels, k, Candidate("convolve", (k.shape[0] // 2, k.shape[1] // 2), "mirror"))
    found = _found(levels, out, k)
    assert found.verdict == "exact"
    assert set(found.equivalent["operation"]) == set(OPERATIONS)  # all four are the same
    assert found.matches("correlate") and found.matches("convolve")


def test_effective_kernels_follow_the_definitions():
    k = Kernel([[1, 2, 3], [4, 5, 6]], origin=(0, 2))
    conv = effective_kernel(k, "convolve", k.origin)
    assert conv == k.rotated()  # convcli's own definition of convolution
    assert effective_kernel(k, "correlate", k.origin) == k
    fx = effective_kernel(k, "convolve-x", k.origin)
    assert fx.weights.tolist() == [[3, 2, 1], [6, 5, 4]] and fx.origin == (0, 0)
    fy = effective_kernel(k, "convolve-y", k.origin)
    assert fy.weights.tolist() == [[4, 5, 6], [1, 2, 3]] and fy.origin == (1, 2)


# -- other libraries' outputs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "mode", "op"),
    [
        ("convolve", "reflect", "convolve"),
        ("correlate", "mirror", "correlate"),
        ("convolve", "wrap", "convolve"),
        ("correlate", "nearest", "correlate"),
    ],
)
def test_identify_scipy_ndimage_outputs(fn, mode, op):
    from scipy import ndimage

    levels = _image(50, 60, channels=1)[..., 0]
    out = getattr(ndimage, fn)(levels, KERNEL.weights, mode=mode)  # uint8 in, uint8 out
    found = _found(levels[..., None], out[..., None])
    assert found.best.candidate.operation == op
    assert found.best.candidate.boundary == mode
    assert found.best.candidate.rounding == "truncate"  # ndimage casts to uint8 by truncating
    assert found.best.fits


@pytest.mark.parametrize(
    ("border", "mode"),
    [("BORDER_REFLECT_101", "mirror"), ("BORDER_REFLECT", "reflect"),
     ("BORDER_REPLICATE", "nearest"), ("BORDER_WRAP", "wrap"), ("BORDER_CONSTANT", "constant")],
)  # fmt: skip
def test_identify_opencv_filter2d_outputs(border, mode):
    cv2 = pytest.importorskip("cv2")
    levels = _image(50, 60)
    if border == "BORDER_WRAP":  # filter2D refuses BORDER_WRAP; pad by hand, then crop
        pad = cv2.copyMakeBorder(levels, 4, 4, 4, 4, cv2.BORDER_WRAP)
        out = cv2.filter2D(pad, -1, KERNEL.weights)[4:-4, 4:-4]
    else:
        out = cv2.filter2D(levels, -1, KERNEL.weights, borderType=getattr(cv2, border))
    found = _found(levels, out)
    best = found.best.candidate
    assert (best.operation, best.boundary, best.rounding) == ("correlate", mode, "nearest")
    assert best.origin == (2, 2)
    assert found.best.fits


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path):
    levels = _image(48, 56)
    cand = Candidate("convolve", (2, 2), "nearest", rounding="truncate")
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    write_image(from_array(levels / 255.0, depth="8"), src)
    write_image(from_array(_make(levels, KERNEL, cand) / 255.0, depth="8"), dst)
    kfile = tmp_path / "k.txt"
    kfile.write_text("\n".join(" ".join(repr(float(v)) for v in row) for row in KERNEL.weights))
    return src, dst, kfile


def test_cli_identify_table_json_and_expect(pair):
    src, dst, kfile = pair
    runner = CliRunner()
    result = runner.invoke(main, ["identify", str(src), str(dst), "-k", str(kfile)])
    assert result.exit_code == 0, result.output
    assert "EXACT" in result.stdout
    assert "convolution: correlation with the kernel rotated 180 degrees" in result.stdout
    assert "truncate" in result.stdout and "runner-up" in result.stdout
    result = runner.invoke(main, ["identify", str(src), str(dst), "-k", str(kfile), "--json"])
    report = json.loads(result.stdout)
    assert report["verdict"] == "exact"
    assert report["best"]["operation"] == "convolve"
    assert report["best"]["boundary"] == "nearest"
    assert report["best"]["rounding"] == "truncate"
    assert report["best"]["interior"]["within_1_level"] == 1.0
    assert report["runner_up"]["operation"] in OPERATIONS
    assert report["runner_up_differs_in"]
    ok = runner.invoke(main, ["identify", str(src), str(dst), "-k", str(kfile), "--expect",
                              "convolve"])  # fmt: skip
    assert ok.exit_code == 0
    bad = runner.invoke(main, ["identify", str(src), str(dst), "-k", str(kfile), "--expect",
                               "correlate"])  # fmt: skip
    assert bad.exit_code == 1
    assert "Error: expected correlate, but it is best explained by convolve" in bad.stderr


def test_cli_identify_bad_input_is_one_line_naming_the_file(pair, tmp_path):
    src, dst, kfile = pair
    small = tmp_path / "small.png"
    write_image(from_array(np.zeros((10, 10)), depth="8"), small)
    runner = CliRunner()
    result = runner.invoke(main, ["identify", str(src), str(small), "-k", str(kfile)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {small}: the output is 10x10 but the input is 56x48")
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1
    missing = runner.invoke(main, ["identify", str(src), str(tmp_path / "no.png"), "-k", "box"])
    assert missing.exit_code == 1 and "no.png" in missing.stderr
    bad_kernel = tmp_path / "bad.txt"
    bad_kernel.write_text("1 2\n3 x\n")
    result = runner.invoke(main, ["identify", str(src), str(dst), "-k", str(bad_kernel)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {bad_kernel}:2")


@pytest.mark.parametrize("op", ["convolve", "correlate"])
@pytest.mark.parametrize(
    ("mode", "cval", "policy"),
    [("reflect", 0.0, "clip"), ("constant", 0.6, "offset"), ("wrap", 0.0, "abs"),
     ("mirror", 0.0, "offset"), ("nearest", 0.0, "clip")],
)  # fmt: skip
def test_identify_what_convcli_apply_writes(op, mode, cval, policy):
    # the apply path itself (strip engine, float32, convcli's rounding), 8-bit and 16-bit out
    from convcli import FilterOptions, filter_samples

    levels = _image(44, 50)
    options = FilterOptions(op=op, mode=mode, cval=cval, range_policy=policy)
    for depth, top in (("8", 255.0), ("16", 65535.0)):
        out = filter_samples(levels, [KERNEL], replace(options, depth=depth))
        found = identify(from_array(levels / 255.0, depth="8"),
                         from_array(out / top, depth=depth), KERNEL)  # fmt: skip
        best = found.best.candidate
        assert (best.operation, best.boundary) == (op, mode), depth
        assert policy in found.equivalent["range"]  # abs == clip when nothing is negative
        assert best.rounding == "nearest" and best.origin == (2, 2)
        if mode == "constant":
            assert abs(best.cval - cval) <= 1 / 255
        # float32 arithmetic may move a rare value across a rounding tie: within 1 level
        assert found.best.fits and found.best.interior.exact > 0.99


def test_identify_a_float_output_unrounded():
    levels = _image(40, 48, channels=1)
    raw = correlate(levels / 255.0, KERNEL, mode="mirror", dtype=np.float64)
    found = identify(from_array(levels / 255.0, depth="8"), from_array(raw, depth="float"),
                     KERNEL)  # fmt: skip
    best = found.best.candidate
    assert (best.operation, best.boundary, best.range, best.rounding) == (
        "correlate", "mirror", "none", "none")  # fmt: skip
    assert found.verdict == "exact"  # float32 output: within 0.001 of a level everywhere
    assert found.best.interior.max_diff < 1e-3


def test_identify_compares_grey_stored_as_rgb_as_grey():
    levels = _image(40, 48, channels=1)
    cand = Candidate("convolve", (2, 2), "reflect")
    out = _make(levels, KERNEL, cand)
    found = _found(np.repeat(levels, 3, axis=2), out)
    assert found.best.candidate == cand and found.verdict == "exact"
    assert found.notes == ["the input is grey stored as RGB: compared as grey"]
