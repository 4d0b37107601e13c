"""Kernel algebra, convolution as a matrix, and the impulse probe."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image as PILImage

import convcli.algebra as algebra
from convcli.algebra import check_composition, compose, conv_matrix, explain, probe
from convcli.cli import main
from convcli.errors import UsageError
from convcli.kernel_io import WRITE_FORMATS, load_kernel, save_kernel
from convcli.kernels import BUILTINS, Kernel, builtin_kernel

X = np.array([1.0, 2.0, 3.0, 4.0])
W = Kernel([[5, 6, 7]])


# -- the 1-D numbers of CONCEPTS.md, exactly -------------------------------------------------


@pytest.mark.parametrize(
    ("op", "mode", "expected"),
    [
        ("convolve", "full", [5, 16, 34, 52, 45, 28]),
        ("correlate", "valid", [38, 56]),
        ("convolve", "valid", [34, 52]),
        ("convolve", "same", [16, 34, 52, 45]),
        ("correlate", "full", [7, 20, 38, 56, 39, 20]),
        ("correlate", "same", [20, 38, 56, 39]),
    ],
)
def test_1d_numbers(op, mode, expected):
    e = explain(X, W, op=op, mode=mode)
    assert e.output.ravel().tolist() == expected
    assert e.filter_output.ravel().tolist() == expected
    assert e.max_abs_difference == 0


def test_1d_matrix_is_toeplitz_with_tied_weights():
    m, shape = conv_matrix((1, 4), W, op="convolve", mode="full")
    assert shape == (1, 6)
    np.testing.assert_array_equal(
        m,
        [[5, 0, 0, 0], [6, 5, 0, 0], [7, 6, 5, 0], [0, 7, 6, 5], [0, 0, 7, 6], [0, 0, 0, 7]],
    )
    valid, _ = conv_matrix((1, 4), W, op="correlate", mode="valid")
    np.testing.assert_array_equal(valid, [[5, 6, 7, 0], [0, 5, 6, 7]])
    e = explain(X, W, op="correlate", mode="valid")
    assert e.windows[0][1] == [(5.0, 1.0), (6.0, 2.0), (7.0, 3.0)]  # the sliding dot product
    assert e.zeros == 2 and e.distinct_weights == 3


@st.composite
def small_problem(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    img = draw(arrays(np.float64, (h, w), elements=st.floats(-5, 5, allow_subnormal=False)))
    k = draw(arrays(np.float64, (kh, kw), elements=st.integers(-9, 9).map(float)))
    origin = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    return img, Kernel(k, origin=origin)


@settings(max_examples=80, deadline=None)
@given(
    problem=small_problem(),
    op=st.sampled_from(["convolve", "correlate"]),
    mode=st.sampled_from(["full", "same", "valid"]),
)
def test_matrix_equals_the_filter(problem, op, mode):
    img, k = problem
    if mode == "valid" and (img.shape[0] < k.shape[0] or img.shape[1] < k.shape[1]):
        with pytest.raises(UsageError, match="'valid'"):
            explain(img, k, op=op, mode=mode)
        return
    e = explain(img, k, op=op, mode=mode)
    assert e.max_abs_difference <= 1e-9
    # and against scipy, independently of convcli's filter, for full and valid
    if mode in ("full", "valid"):
        f = scipy.signal.convolve2d if op == "convolve" else scipy.signal.correlate2d
        np.testing.assert_allclose(e.output, f(img, k.weights, mode=mode), atol=1e-9)
    nonzero = set(np.unique(k.weights[k.weights != 0]).tolist())
    assert set(np.unique(e.matrix[e.matrix != 0]).tolist()) <= nonzero


def test_2d_matrix_is_doubly_block_toeplitz():
    k = Kernel(np.arange(1.0, 10.0).reshape(3, 3))
    m, shape = conv_matrix((4, 4), k, op="convolve", mode="valid")
    assert shape == (2, 2) and m.shape == (4, 16)
    # each output row holds every weight once; rows for neighbouring outputs are shifts
    for row in m:
        assert sorted(row[row != 0].tolist()) == list(range(1, 10))
    np.testing.assert_array_equal(m[1], np.roll(m[0], 1))
    np.testing.assert_array_equal(m[2], np.roll(m[0], 4))
    assert int((m == 0).sum()) == 4 * 16 - 4 * 9


def test_explain_refuses_large_inputs():
    with pytest.raises(UsageError, match="more than explain shows"):
        conv_matrix((100, 100), Kernel(np.ones((3, 3))), mode="same")


# -- composition -------------------------------------------------------------------------------


def test_compose_golden_tent():
    box = builtin_kernel("box", size=3)
    tent = compose([box, box])
    expected = np.outer([1, 2, 3, 2, 1], [1, 2, 3, 2, 1]) / 81
    np.testing.assert_allclose(tent.weights, expected, atol=1e-15)
    assert tent.origin == (2, 2)


@settings(max_examples=40, deadline=None)
@given(
    ks=st.lists(
        arrays(
            np.float64,
            st.tuples(st.integers(1, 4), st.integers(1, 4)),
            elements=st.integers(-5, 5).map(float),
        ),
        min_size=2,
        max_size=3,
    ),
    data=st.data(),
)
def test_composition_equals_the_sequence(ks, data):
    kernels = [
        Kernel(
            w,
            origin=(
                data.draw(st.integers(0, w.shape[0] - 1)),
                data.draw(st.integers(0, w.shape[1] - 1)),
            ),
        )
        for w in ks
    ]
    composed = compose(kernels)
    check = check_composition(kernels, composed)
    assert check.holds
    assert check.max_abs_correlation <= check.tolerance  # chains of correlations compose too


def test_correlation_is_not_associative_for_asymmetric_kernels():
    ks = [builtin_kernel("emboss"), builtin_kernel("sobel", axis="x")]
    check = check_composition(ks, compose(ks))
    assert check.holds
    assert check.max_abs_correlated_kernels > 1.0


def test_export_round_trip_for_every_built_in_and_format(tmp_path):
    for name, spec in BUILTINS.items():
        required = {p.name: 1.5 for p in spec.params if p.default is None and p.name != "size"}
        k = builtin_kernel(name, **required)
        for fmt in WRITE_FORMATS:
            path = tmp_path / f"{name}.{fmt}"
            save_kernel(k, path)
            back = load_kernel(str(path))
            np.testing.assert_array_equal(back.weights, k.weights)
            if fmt in ("txt", "csv", "im") or k.origin == (k.shape[0] // 2, k.shape[1] // 2):
                assert back.origin == k.origin


# -- probe ---------------------------------------------------------------------------------------


def test_probe_all_backends_match_the_definitions():
    rows = probe()
    assert len(rows) == 6 and all(r.ok for r in rows)
    assert {(r.op, r.reproduces) for r in rows} == {
        ("convolve", "kernel as-is"),
        ("correlate", "kernel rotated 180"),
    }


def test_probe_catches_a_backend_that_swaps_the_operations(monkeypatch):
    real = algebra.filter_array

    def swapped(image, kernel, *, op, **kw):
        return real(image, kernel, op="correlate" if op == "convolve" else "convolve", **kw)

    monkeypatch.setattr(algebra, "filter_array", swapped)
    rows = probe(["direct"])
    assert not any(r.ok for r in rows)
    result = CliRunner().invoke(main, ["probe", "--backend", "direct"])
    assert result.exit_code == 1
    assert "Error: an operation does not match its definition" in result.stderr


def test_probe_catches_a_bug_in_the_separable_path_only(monkeypatch):
    # a direct backend whose two-pass (rank-1) path flips the kernel: only the probe's
    # rank-1 kernel goes there, and it must be enough to fail the direct rows
    from convcli.backends import direct

    real = direct.correlate

    def flipped_when_separable(image, kernel, mode, cval, **kw):
        if kernel.separable:
            kernel = kernel.rotated()
        return real(image, kernel, mode, cval, **kw)

    monkeypatch.setattr(direct, "correlate", flipped_when_separable)
    rows = probe(["direct"])
    assert [r.ok for r in rows] == [False, False]
    assert all(r.reproduces == "neither" for r in rows)


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_explain_and_save_matrix(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["explain", "--signal", "1,2,3,4", "--kernel", "5,6,7"])
    assert result.exit_code == 0
    assert "result: [5, 16, 34, 52, 45, 28]" in result.stdout
    assert "out[2] = 7*1 + 6*2 + 5*3 = 34" in result.stdout
    assert "are equal (max |diff| 0, tolerance" in result.stdout
    result = runner.invoke(
        main,
        [
            "explain",
            "--signal",
            "1,2,3,4",
            "--kernel",
            "5,6,7",
            "--op",
            "correlate",
            "--mode",
            "valid",
        ],
    )
    assert "result: [38, 56]" in result.stdout
    out = tmp_path / "m.npy"
    result = runner.invoke(
        main,
        [
            "explain",
            "--image",
            "[1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16]",
            "--kernel",
            "laplacian",
            "--mode",
            "same",
            "--save-matrix",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    m = np.load(out)
    assert m.shape == (16, 16)
    np.testing.assert_array_equal(
        m @ np.arange(1.0, 17.0),
        explain(
            np.arange(1.0, 17.0).reshape(4, 4), load_kernel("laplacian"), mode="same"
        ).output.ravel(),
    )
    result = runner.invoke(main, ["explain", "--kernel", "5,6,7"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: give exactly one of --signal or --image"


def test_cli_explain_small_image_file(tmp_path):
    src = tmp_path / "tiny.png"
    PILImage.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 10).save(src)
    result = CliRunner().invoke(main, ["explain", "--image", str(src), "--kernel", "box"])
    assert result.exit_code == 0, result.output
    assert "doubly block Toeplitz" in result.stdout
    big = tmp_path / "big.png"
    PILImage.fromarray(np.zeros((50, 50), np.uint8)).save(big)
    result = CliRunner().invoke(main, ["explain", "--image", str(big), "--kernel", "box"])
    assert result.exit_code == 2 and "too large to explain" in result.stderr


def test_cli_compose_export_show_png(tmp_path):
    runner = CliRunner()
    out = tmp_path / "tent.txt"
    result = runner.invoke(main, ["kernels", "compose", "box", "box", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "associativity holds" in result.stderr
    assert "correlation is not associative" in result.stderr
    assert load_kernel(str(out)).shape == (5, 5)
    for fmt in WRITE_FORMATS:
        path = tmp_path / f"e.{fmt}"
        result = runner.invoke(main, ["kernels", "export", "emboss", "-o", str(path)])
        assert result.exit_code == 0
        assert load_kernel(str(path)) == builtin_kernel("emboss")
    png = tmp_path / "k.png"
    result = runner.invoke(main, ["kernels", "show", "motion:length=4,angle=45", "--png", str(png)])
    assert result.exit_code == 0
    with PILImage.open(png) as im:
        assert im.mode == "RGB" and im.width >= 7 * 40


def test_cli_explain_reads_fractions_exponents_and_a_matrix_input():
    runner = CliRunner()
    result = runner.invoke(
        main, ["explain", "--signal", "3,6,9", "--kernel", "1/3,1/3,1/3", "--mode", "valid"]
    )
    assert result.exit_code == 0, result.output
    assert "result: [6]" in result.stdout
    result = runner.invoke(main, ["explain", "--signal", "1,2,3", "--kernel", "1e-3,2"])
    assert result.exit_code == 0 and "result: [0.001, 2.002, 4.003, 6]" in result.stdout
    result = runner.invoke(
        main, ["explain", "--image", "[1 2 3; 4 5 6]", "--kernel", "5,6,7", "--mode", "valid"]
    )
    assert result.exit_code == 0, result.output
    # valid convolution of each row with [5, 6, 7]: 7*1 + 6*2 + 5*3 and 7*4 + 6*5 + 5*6
    assert "34" in result.stdout and "88" in result.stdout


def test_cli_explain_refuses_non_finite_input_and_a_bad_matrix_path_before_work(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["explain", "--signal", "inf,1,2", "--kernel", "1,1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --signal must be finite numbers, got 'inf'"
    result = runner.invoke(
        main, ["explain", "--signal", "1,2", "--kernel", "1,1", "--save-matrix", "m.txt"]
    )
    assert result.exit_code == 2 and result.stdout == ""  # nothing printed before the refusal
    assert "use .npy or .csv" in result.stderr
    missing = tmp_path / "nodir" / "m.npy"
    result = runner.invoke(
        main, ["explain", "--signal", "1,2", "--kernel", "1,1", "--save-matrix", str(missing)]
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert f"{missing}: folder '{missing.parent}' does not exist" in result.stderr


def test_cli_explain_exits_1_when_the_check_fails(monkeypatch):
    real = algebra.filter_output
    monkeypatch.setattr(algebra, "filter_output", lambda *a, **kw: real(*a, **kw) + 1.0)
    result = CliRunner().invoke(main, ["explain", "--signal", "1,2,3", "--kernel", "1,2"])
    assert result.exit_code == 1
    assert "are NOT equal (max |diff| 1," in result.stdout


@pytest.mark.parametrize(
    "kernels, reason",
    [
        (["emboss"], "with one kernel there is nothing to merge"),
        (["emboss", "gaussian:sigma=1,size=3"], "every kernel after the first is point-symm"),
    ],
)
def test_cli_compose_says_why_correlation_merged_without_difference(kernels, reason):
    result = CliRunner().invoke(main, ["kernels", "compose", *kernels])
    assert result.exit_code == 0
    assert reason in result.stderr


def test_cli_compose_shows_that_merging_by_correlation_differs_for_asymmetric_kernels():
    result = CliRunner().invoke(main, ["kernels", "compose", "box", "emboss"])
    assert result.exit_code == 0
    line = next(x for x in result.stderr.splitlines() if x.startswith("correlation is not"))
    assert "(0 here" not in line
    assert float(line.split("differs from correlating in turn by up to ")[1].split(";")[0]) > 0.1
