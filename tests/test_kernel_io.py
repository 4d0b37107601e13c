"""Kernel files and strings: every format, the shipped files, exact error messages."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convcli.cli import main
from convcli.errors import KernelFileError, KernelSpecError, UsageError
from convcli.kernel_io import (
    WRITE_FORMATS,
    format_kernel,
    load_kernel,
    load_kernel_file,
    parse_kernel_text,
    save_kernel,
)
from convcli.kernels import Kernel

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
K273 = (
    np.array(
        [
            [1, 4, 7, 4, 1],
            [4, 16, 26, 16, 4],
            [7, 26, 41, 26, 7],
            [4, 16, 26, 16, 4],
            [1, 4, 7, 4, 1],
        ],
        dtype=float,
    )
    / 273
)

SHIPPED = {
    "gaussian5x5_273.txt": K273,
    "gaussian5x5_273.mat": K273,
    "sharpen3x3.csv": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "laplacian3x3.im": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "sobel_x.txt": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y.mat": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "emboss.txt": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "motion5_30deg.npy": None,  # checked by its properties
}


def test_every_shipped_kernel_file_is_known_and_loads():
    files = sorted(p.name for p in KERNELS.iterdir() if p.suffix != ".md")
    assert files == sorted(SHIPPED)  # a new file must be added to SHIPPED with its weights
    for name, expected in SHIPPED.items():
        k = load_kernel(str(KERNELS / name))
        if expected is not None:
            np.testing.assert_allclose(k.weights, expected, atol=1e-12)
        assert k.origin == (k.shape[0] // 2, k.shape[1] // 2)


def test_shipped_kernel_properties():
    assert not load_kernel(str(KERNELS / "gaussian5x5_273.txt")).separable
    assert load_kernel(str(KERNELS / "gaussian5x5_273.mat")).rank == 3
    motion = load_kernel(str(KERNELS / "motion5_30deg.npy"))
    assert motion.symmetry.value == "asymmetric" and motion.sum == pytest.approx(1)
    assert load_kernel(str(KERNELS / "emboss.txt")).symmetry.value == "asymmetric"
    assert load_kernel(str(KERNELS / "sobel_y.mat")).symmetry.value == "antisymmetric"


# -- formats -----------------------------------------------------------------------------------


def test_plain_text_separators_comments_fractions_and_header():
    text = """# a comment
    # scale: 1/2
    # origin: 0,1
    1, 2\t3   # trailing comment

    4;5 6e0
    1/2 -1/4 0.5
    """
    k = parse_kernel_text(text, source="k.txt")
    np.testing.assert_allclose(k.weights, np.array([[1, 2, 3], [4, 5, 6], [0.5, -0.25, 0.5]]) / 2)
    assert k.origin == (0, 1) and k.name == "k.txt"


def test_divisor_header():
    k = parse_kernel_text("1 2 1\n2 4 2\n1 2 1\n# divisor: 16")
    assert k.sum == pytest.approx(1.0)


def test_libvips_mat_scale():
    k = parse_kernel_text("3 1 2\n2 4 6\n", fmt="mat")
    np.testing.assert_allclose(k.weights, [[1, 2, 3]])


def test_mat_detected_by_content_with_a_scale_field():
    k = parse_kernel_text("2 2 4\n4 4\n4 4\n")
    np.testing.assert_allclose(k.weights, np.ones((2, 2)))
    # "w h" alone is taken as a text row (ambiguous without .mat)
    assert parse_kernel_text("2 2\n4 4\n4 4\n").shape == (3, 2)


@pytest.mark.parametrize(
    ("text", "origin", "weights"),
    [
        ("3x3: 0,1,0 1,-4,1 0,1,0", (1, 1), [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        ("3: 0,1,0,1,-4,1,0,1,0", (1, 1), [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        ("2x1: 1 -1", (0, 0), [[1, -1]]),  # ImageMagick: (w-1)//2 for even widths
        ("2x2+1+0: 1,2 3,4", (0, 1), [[1, 2], [3, 4]]),  # +X+Y: X column, Y row
        ("3x1: 1,nan,1", (0, 1), [[1, 0, 1]]),
        ("4x2: 1 2 3 4 5 6 7 8", (0, 1), [[1, 2, 3, 4], [5, 6, 7, 8]]),
    ],
)
def test_imagemagick_strings(text, origin, weights):
    k = load_kernel(text)
    assert k.origin == origin
    np.testing.assert_allclose(k.weights, weights)


def test_inline_matrix():
    k = load_kernel("[1 2 1; 0 0 0; -1 -2 -1]")
    np.testing.assert_allclose(k.weights, [[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    assert load_kernel("1 1; 1 1").shape == (2, 2)


def test_npy(tmp_path):
    np.save(tmp_path / "k.npy", np.arange(6.0))
    assert load_kernel(str(tmp_path / "k.npy")).shape == (1, 6)
    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 2)))
    with pytest.raises(KernelFileError, match="bad.npy: .npy kernel must be 1-D or 2-D, got 3-D"):
        load_kernel(str(tmp_path / "bad.npy"))
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(KernelFileError, match="must be numeric"):
        load_kernel(str(tmp_path / "s.npy"))
    np.save(tmp_path / "n.npy", np.array([1.0, np.nan]))
    with pytest.raises(KernelFileError, match="NaN or infinite"):
        load_kernel(str(tmp_path / "n.npy"))


def test_dispatch_prefers_files_then_strings_then_built_ins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_kernel("gaussian:sigma=1").name == "gaussian(sigma=1.0)"
    (tmp_path / "box").write_text("7\n")
    assert load_kernel("box").weights.tolist() == [[7.0]]  # an existing file wins
    with pytest.raises(KernelFileError, match="^missing/k.txt: kernel file not found$"):
        load_kernel("missing/k.txt")
    with pytest.raises(KernelFileError, match="^nothere.csv: kernel file not found$"):
        load_kernel("nothere.csv")
    with pytest.raises(KernelSpecError, match="unknown kernel 'nothere'"):
        load_kernel("nothere")
    with pytest.raises(UsageError, match="empty kernel spec"):
        load_kernel("  ")


# -- errors: file, line, column --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "k.txt: no kernel values found \\(empty file\\?\\)"),
        ("# only a comment\n\n", "k.txt: no kernel values found"),
        ("1 2 3\n4 5\n", "k.txt:2: row 2 has 2 values, expected 3 \\(as in line 1\\)"),
        ("1 2\n3 abc\n", "k.txt:2:3: 'abc' is not a number"),
        ("1 nan\n", "k.txt:1:3: 'nan' is not a finite number"),
        ("1 inf\n", "k.txt:1:3: 'inf' is not a finite number"),
        ("1 2/0\n", "k.txt:1:3: division by zero in '2/0'"),
        ("# origin: 5,5\n1 2\n", "k.txt:1: kernel origin \\(row 5, col 5\\) lies outside the 1x2"),
        ("# origin: a\n1\n", "k.txt:1: origin must be 'row,col' \\(0-based\\), got 'a'"),
        ("# divisor: 0\n1\n", "k.txt:1: divisor is 0"),
    ],
)
def test_text_errors(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    Path("k.txt").write_text(content)
    with pytest.raises(KernelFileError, match=f"^{message}") as info:
        load_kernel("k.txt")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("3 2\n1 2 3\n", "k.mat:2: header says 2 rows but 1 follow"),
        ("3 1\n1 2\n", "k.mat:2: row has 2 values, header says width 3"),
        ("3\n1 2 3\n", "k.mat:1: matrix header must be 'width height \\[scale \\[offset\\]\\]'"),
        ("2.5 1\n1 2\n", "k.mat:1: matrix width and height must be positive integers"),
        ("1 1 0\n5\n", "k.mat:1: matrix scale is 0"),
        ("2000 1\n1\n", "k.mat: kernel of 1x2000 is too large"),
    ],
)
def test_mat_errors(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    Path("k.mat").write_text(content)
    with pytest.raises(KernelFileError, match=f"^{message}"):
        load_kernel("k.mat")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3x3: 1,2,3", "<string>: ImageMagick kernel 3x3 needs 9 values, got 3"),
        ("2x2+5+0: 1 2 3 4", "<string>: ImageMagick origin \\+5\\+0 lies outside the 2x2 kernel"),
        ("3x1: 1 x 1", "<string>:1:8: 'x' is not a number"),
        ("3x1: 1 1 1; 3x1: 1 1 1", "<string>: multiple ImageMagick kernels"),
    ],
)
def test_imagemagick_errors(text, message):
    with pytest.raises(KernelFileError, match=f"^{message}"):
        load_kernel(text)


def test_binary_and_directory_and_huge(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(KernelFileError, match="b.txt: not a text kernel file"):
        load_kernel_file(tmp_path / "b.txt")
    with pytest.raises(KernelFileError, match="is a directory"):
        load_kernel_file(tmp_path)
    rows = "\n".join(["1"] * 1100)
    (tmp_path / "tall.txt").write_text(rows)
    with pytest.raises(KernelFileError, match="tall.txt: kernel of 1026x1 is too large"):
        load_kernel_file(tmp_path / "tall.txt")


# -- writing and round trips -----------------------------------------------------------------


@st.composite
def kernels_with_origin(draw):
    w = draw(
        arrays(
            np.float64,
            st.tuples(st.integers(1, 5), st.integers(1, 5)),
            elements=st.floats(-1e6, 1e6, allow_subnormal=False),
        )
    )
    origin = (draw(st.integers(0, w.shape[0] - 1)), draw(st.integers(0, w.shape[1] - 1)))
    return Kernel(w, origin=origin)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(k=kernels_with_origin(), fmt=st.sampled_from(WRITE_FORMATS))
def test_save_load_round_trip(tmp_path, k, fmt):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # tmp_path is shared by the examples
    path = folder / f"k.{fmt}"
    default = (k.shape[0] // 2, k.shape[1] // 2)
    if fmt in ("mat", "npy") and k.origin != default:
        # those formats have no origin: the kernel would load back shifted, so refuse
        with pytest.raises(UsageError, match=f"a .{fmt} file cannot store the kernel's origin"):
            save_kernel(k, path)
        assert not list(folder.iterdir())  # nothing written, no temporary left
        k = k.with_origin(default)
    save_kernel(k, path)
    back = load_kernel_file(path)
    np.testing.assert_array_equal(back.weights, k.weights)  # exact: repr() of every float
    assert back.origin == k.origin


def test_save_refuses_a_format_that_contradicts_the_extension(tmp_path):
    with pytest.raises(UsageError, match="'m.txt' is a .txt name but the format asked for is npy"):
        save_kernel(Kernel([[1, 2, 1]]), tmp_path / "m.txt", "npy")
    assert not (tmp_path / "m.txt").exists()


def test_save_into_a_missing_folder_is_one_line_naming_the_file(tmp_path):
    target = tmp_path / "nodir" / "k.txt"
    with pytest.raises(KernelFileError, match=r"nodir/k.txt: cannot write \(.*does not exist"):
        save_kernel(Kernel([[1, 2, 1]]), target)


def test_format_im_string_is_loadable_as_a_spec():
    k = Kernel([[1, 2], [3, 4.5]], origin=(1, 0))
    text = format_kernel(k, "im")
    assert text == "2x2+0+1: 1,2 3,4.5\n"
    assert load_kernel(text.strip()) == k


def test_save_needs_a_known_format(tmp_path):
    with pytest.raises(UsageError, match="cannot tell the kernel format from 'k.xyz'"):
        save_kernel(Kernel([[1]]), tmp_path / "k.xyz")


def test_imagemagick_errors_name_line_and_column(tmp_path):
    path = tmp_path / "bad.im"
    path.write_text("3x3: 0,1,0\n 1,x,1\n 0,1,0\n")
    with pytest.raises(KernelFileError) as info:
        load_kernel_file(path)
    assert str(info.value) == f"{path}:2:4: 'x' is not a number"
    with pytest.raises(KernelFileError) as info:
        load_kernel("3x3: 0,1,0 1,y,1 0,1,0")
    assert str(info.value) == "<string>:1:14: 'y' is not a number"
    assert info.value.exit_code == 2  # written on the command line: a usage error


def test_origin_outside_the_kernel_names_the_header_line(tmp_path):
    path = tmp_path / "o.txt"
    path.write_text("1 2 1\n# origin: 5,5\n")
    with pytest.raises(KernelFileError, match=r"o.txt:2: kernel origin \(row 5, col 5\) lies"):
        load_kernel_file(path)


def test_a_number_too_large_for_a_float_is_an_error_not_a_traceback(tmp_path):
    path = tmp_path / "ov.txt"
    path.write_text("1e400/2 1\n")
    with pytest.raises(KernelFileError, match=r"ov.txt:1:1: '1e400/2' is not a finite number"):
        load_kernel_file(path)


def test_an_imagemagick_string_saved_as_txt_is_read_as_one(tmp_path):
    path = tmp_path / "im.txt"
    path.write_text("3x3+0+0: 0 1 0 1 -4 1 0 1 0\n")
    k = load_kernel_file(path)
    assert k.shape == (3, 3) and k.origin == (0, 0)
    assert k.weights.tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]


# -- hostile kernels: bounded cost, one line each ---------------------------------------------


@pytest.mark.timeout(20)
def test_huge_exponents_cost_nothing(tmp_path):
    path = tmp_path / "e.txt"
    path.write_text("1 2 1e999999999/1\n")
    with pytest.raises(KernelFileError, match=r"e.txt:1:5: '1e999999999/1' is not a finite number"):
        load_kernel_file(path)
    with pytest.raises(KernelFileError, match="is not a finite number"):
        load_kernel("[1 2 1e999999999/1]")
    result = CliRunner().invoke(
        main, ["explain", "--signal", "1,2,3", "--kernel", "[1 1e999999999/1]"]
    )
    assert result.exit_code == 2 and "finite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_huge_row_is_refused_while_scanning(tmp_path):
    path = tmp_path / "row.txt"
    path.write_text(" ".join(["1"] * 5000) + "\n")
    with pytest.raises(KernelFileError, match=r"row.txt:1: a row holds more than 1025 values"):
        load_kernel_file(path)
    im = tmp_path / "big.im"
    im.write_text("3x3: " + " ".join(["1"] * 2_000_000))
    with pytest.raises(KernelFileError, match="big.im"):
        load_kernel_file(im)


def test_npy_with_a_malformed_or_huge_header_is_one_line(tmp_path):
    import numpy.lib.format as npf

    good = io.BytesIO()
    np.save(good, np.ones((3, 3)))
    data = good.getvalue()
    bad = tmp_path / "bad.npy"
    bad.write_bytes(
        data[:10] + b"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 3" + data[60:]
    )
    with pytest.raises(KernelFileError, match=r"bad.npy: not a valid .npy array"):
        load_kernel_file(bad)
    huge = tmp_path / "huge.npy"
    buf = io.BytesIO()
    npf.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)}
    )
    header = buf.getvalue()
    assert header.startswith(b"\x93NUMPY")
    huge.write_bytes(header + bytes(64))  # a header claiming 80 GB, and 64 bytes of data
    with pytest.raises(KernelFileError, match=r"huge.npy: kernel of 100000x100000 is too large"):
        load_kernel_file(huge)


def test_an_imagemagick_size_of_4301_digits_is_one_line(tmp_path):
    size = "9" * 4301
    with pytest.raises(KernelFileError, match="ImageMagick kernel size is too large"):
        load_kernel(f"{size}x3: 1,2,3")
    path = tmp_path / "k.im"
    path.write_text(f"3x{size}: 1")
    with pytest.raises(KernelFileError, match="k.im: ImageMagick kernel size is too large"):
        load_kernel_file(path)


def test_a_decimal_comma_is_an_error_with_a_hint(tmp_path):
    path = tmp_path / "dc.txt"
    path.write_text("0,25 0,5 0,25\n")
    with pytest.raises(KernelFileError) as info:
        load_kernel_file(path)
    assert str(info.value).startswith(f"{path}:1:1: '0,25' looks like a decimal comma")
    # commas alone, or commas followed by spaces, are separators
    assert load_kernel_file(_write(tmp_path / "a.txt", "1,2,1\n")).shape == (1, 3)
    assert load_kernel_file(_write(tmp_path / "b.txt", "1, 2, 1\n2, 4, 2\n")).shape == (2, 3)
    assert load_kernel_file(_write(tmp_path / "c.csv", "1,2,1\n")).shape == (1, 3)


def _write(path, text):
    path.write_text(text)
    return path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(alphabet=st.sampled_from(list("0123456789 ,;\t\n.-+eE/x:#[]abcNn")), max_size=120),
    ext=st.sampled_from([".txt", ".csv", ".mat", ".im", ".kernel"]),
)
def test_any_kernel_text_is_a_kernel_or_one_clear_error(tmp_path_factory, text, ext):
    from convcli.errors import ConvcliError

    path = tmp_path_factory.mktemp("k") / f"k{ext}"
    path.write_text(text)
    for load in (lambda: load_kernel_file(path), lambda: load_kernel(text or "x")):
        try:
            kernel = load()
        except ConvcliError as exc:
            assert "\n" not in str(exc)
        else:
            assert np.all(np.isfinite(kernel.weights))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_npy_bytes_are_a_kernel_or_one_clear_error(tmp_path_factory, data):
    from convcli.errors import ConvcliError

    good = io.BytesIO()
    np.save(good, np.arange(9.0).reshape(3, 3))
    for blob in (data, good.getvalue()[:10] + data, good.getvalue()[: len(data) % 200]):
        path = tmp_path_factory.mktemp("n") / "k.npy"
        path.write_bytes(blob)
        try:
            load_kernel_file(path)
        except ConvcliError as exc:
            assert "\n" not in str(exc)


def test_offsets_are_read_and_written_back(tmp_path):
    from convcli.kernel_io import load_kernel_file, save_kernel

    mat = _write(tmp_path / "emboss.mat", "3 3 16 128\n-2 -1 0\n-1 1 1\n0 1 2\n")
    k = load_kernel_file(mat)
    assert k.offset == 128 and k.weights[0, 0] == -2 / 16  # out = sum / scale + offset
    txt = load_kernel_file(_write(tmp_path / "k.txt", "# offset: -0.5\n1 2 1\n"))
    assert txt.offset == -0.5
    for ext in ("txt", "csv", "mat"):
        save_kernel(k, tmp_path / f"back.{ext}")
        back = load_kernel_file(tmp_path / f"back.{ext}")
        assert back.offset == 128 and np.allclose(back.weights, k.weights)
    for ext in ("im", "npy"):
        with pytest.raises(UsageError, match=f"a .{ext} file cannot store the kernel's offset"):
            save_kernel(k, tmp_path / f"back.{ext}")
    assert k.rotated().offset == 128 and k.normalized().offset == 128
