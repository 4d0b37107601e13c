"""Kernel files and strings: parse, detect, and write them.  Pure: no click, no rich.

:func:`load_kernel` is what every ``-k KERNEL`` goes through.  It takes, in order:

1. an existing file, by extension (else by content):
   ``.txt``/``.kernel``/other text, ``.csv``, ``.mat`` (libvips), ``.im``
   (an ImageMagick kernel string), ``.npy`` (NumPy);
2. an ImageMagick kernel string: ``"3x3: 0,1,0 1,-4,1 0,1,0"``, ``"3x3+0+0: ..."``,
   ``"3: ..."`` (square);
3. an inline matrix: ``"[1 2 1; 0 0 0; -1 -2 -1]"`` (rows separated by ``;``);
4. a built-in spec ``NAME[:key=value,...]`` (:func:`convcli.kernels.parse_spec`).

A spec that looks like a path (has a ``/`` or a kernel-file extension) but does
not exist is reported as a missing file, not as an unknown built-in.

Plain text format
-----------------
Rows of numbers separated by spaces, commas, semicolons or tabs; ``#`` starts a
comment; blank lines are ignored; a number may be written as a fraction
``1/273``.  Optional header lines (comments, keys case-insensitive)::

    # scale: 1/273      multiply every weight (default 1)
    # divisor: 273      divide every weight (default 1)
    # origin: 2,2       0-based row,col of the anchor (default rows//2, cols//2)
    # offset: 128       added to every result, in the image's levels (as libvips' .mat)

libvips ``.mat``: first line ``width height [scale [offset]]``, then ``height``
rows of ``width`` numbers; weights are the values divided by ``scale`` (the
libvips rule), and the offset is added to every result in the image's own levels (128:
mid-grey for 8-bit; the libvips rule ``out = sum / scale + offset``).  The origin is the libvips
one, the centre (``(rows // 2, cols // 2)`` for even sizes).

ImageMagick strings: ``WxH[+X+Y]:`` then ``W*H`` values, row by row, separated
by commas and/or spaces; ``X`` is the origin's column and ``Y`` its row
(0-based); without them ImageMagick's default ``((H-1)//2, (W-1)//2)`` is used.
``nan`` or ``-`` (ImageMagick's "not part of the neighbourhood") count as 0.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from .atomic import write_atomically
from .errors import KernelFileError, PathError, UsageError
from .kernels import MAX_KERNEL_SIDE, Kernel, parse_spec

#: Kernel file formats by extension.
FORMATS: dict[str, str] = {
    ".txt": "txt",
    ".kernel": "txt",
    ".csv": "csv",
    ".mat": "mat",
    ".im": "im",
    ".npy": "npy",
}
#: The formats :func:`save_kernel` writes.
WRITE_FORMATS: tuple[str, ...] = ("txt", "csv", "mat", "im", "npy")

#: Larger files are refused before reading (a 1025x1025 kernel in text is ~20 MB).
MAX_FILE_BYTES = 64 * 2**20

_IM_RE = re.compile(r"^\s*(\d+)(?:x(\d+))?(?:([+-]\d+)([+-]\d+))?\s*:(.*)$", re.DOTALL)
_SPLIT_RE = re.compile(r"[\s,;]+")
_HEADER_RE = re.compile(r"^\s*#\s*([A-Za-z]+)\s*:\s*(.*?)\s*$")


def parse_number(text: str) -> float:
    """A number as written in a kernel: decimal or exponent notation, or a fraction ``a/b``
    of two such numbers (each converted to float, then divided).  Raises ValueError or
    ZeroDivisionError.  Costs the same whatever the exponent: ``1e999999999`` is inf at
    once (never an exact 10**999999999)."""
    text = text.strip()
    if "/" in text:
        num, _, den = text.partition("/")
        return float(num.strip()) / float(den.strip())
    return float(text)


def _number(token: str, source: str, line: int | None, column: int | None) -> float:
    text = token.strip()
    try:
        if "/" in text and float(text.partition("/")[2]) == 0.0:
            raise KernelFileError(source, f"division by zero in '{text}'", line=line, column=column)
        value = parse_number(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise KernelFileError(
            source, f"'{text}' is not a number", line=line, column=column
        ) from None
    if not np.isfinite(value):
        raise KernelFileError(source, f"'{text}' is not a finite number", line=line, column=column)
    return value


_TOKEN_RE = re.compile(r"[^\s,;]+")
#: A comma between two digits inside a space-separated group: a decimal comma (0,25).
_DECIMAL_COMMA_RE = re.compile(r"\d,\d")


def _tokens(
    line: str, source: str = "<string>", number: int | None = None, *, limit: int | None = None
) -> list[tuple[str, int]]:
    """Tokens of a data line with their 1-based columns; more than ``limit`` (default: the
    largest kernel side) is refused while scanning, so a huge row costs no huge list."""
    limit = MAX_KERNEL_SIDE if limit is None else limit
    found = []
    for m in _TOKEN_RE.finditer(line):
        if len(found) == limit:
            raise KernelFileError(
                source, f"a row holds more than {limit} values (at most {MAX_KERNEL_SIDE} a "
                "side)", line=number,
            )  # fmt: skip
        found.append((m.group(0), m.start() + 1))
    return found


def _check_decimal_comma(line: str, source: str, number: int) -> None:
    """Refuse ``0,25 0,5 0,25``: values separated by spaces with commas inside them."""
    groups = list(re.finditer(r"\S+", line))
    if len(groups) < 2:
        return
    for g in groups:
        m = _DECIMAL_COMMA_RE.search(g.group(0).strip(",;"))
        if m:
            raise KernelFileError(
                source, f"'{g.group(0)}' looks like a decimal comma: write decimals with '.' "
                "(as libvips and ImageMagick read them) and separate values by spaces or by "
                "commas, not both", line=number, column=g.start() + 1,
            )  # fmt: skip


def _check_shape(rows: int, cols: int, source: str) -> None:
    if rows > MAX_KERNEL_SIDE or cols > MAX_KERNEL_SIDE:
        raise KernelFileError(
            source, f"kernel of {rows}x{cols} is too large (at most {MAX_KERNEL_SIDE} a side)"
        )


def _parse_origin(text: str, source: str, line: int) -> tuple[int, int]:
    parts = [p for p in _SPLIT_RE.split(text.strip()) if p]
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise KernelFileError(
            source, f"origin must be 'row,col' (0-based), got '{text}'", line=line
        ) from None


def parse_kernel_text(text: str, *, source: str = "<string>", fmt: str | None = None) -> Kernel:
    """Parse a kernel written as text in the ``txt``, ``csv``, ``mat`` or ``im`` format.

    ``fmt=None`` detects it: an ImageMagick header ``WxH:`` makes ``im``, a
    first line ``width height scale [offset]`` followed by ``height`` rows of
    ``width`` numbers makes ``mat``, anything else is plain text.

    >>> parse_kernel_text("1 2 1\\n2 4 2\\n1 2 1\\n# divisor: 16").sum
    1.0
    """
    fmt = fmt or _sniff(text)
    if fmt == "im":
        return _parse_im(text, source)
    if fmt == "mat":
        return _parse_mat(text, source)
    if fmt not in ("txt", "csv"):
        raise UsageError(f"unknown kernel text format '{fmt}'")
    return _parse_rows(text, source)


def _sniff(text: str) -> str:
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    if _IM_RE.match(body):
        return "im"
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if lines:
        head = _SPLIT_RE.split(lines[0].strip(), maxsplit=4)  # 5 pieces: not a header
        try:
            # "w h" alone is ambiguous with a text kernel's first row: only a header of
            # 3 or 4 fields (w h scale [offset]) is taken as libvips without the extension
            if 3 <= len(head) <= 4:
                w, h = int(head[0]), int(head[1])
                rows = lines[1:]
                if h == len(rows) and w > 0 and all(len(_tokens(r)) == w for r in rows):
                    return "mat"
        except (ValueError, KernelFileError):
            pass
    return "txt"


def _parse_rows(text: str, source: str) -> Kernel:
    rows: list[list[float]] = []
    first_line: list[int] = []
    scale = 1.0
    offset = 0.0
    origin: tuple[int, int] | None = None
    origin_line: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(raw)
        if header:
            key, value = header.group(1).lower(), header.group(2)
            if key == "scale":
                scale *= _number(value, source, number, None)
            elif key == "divisor":
                d = _number(value, source, number, None)
                if d == 0:
                    raise KernelFileError(source, "divisor is 0", line=number)
                scale /= d
            elif key == "origin":
                origin = _parse_origin(value, source, number)
                origin_line = number
            elif key == "offset":
                offset = _number(value, source, number, None)
            continue
        line = raw.split("#", 1)[0]
        tokens = _tokens(line, source, number)
        if not tokens:
            continue
        _check_decimal_comma(line, source, number)
        values = [_number(tok, source, number, col) for tok, col in tokens]
        if rows and len(values) != len(rows[0]):
            raise KernelFileError(
                source,
                f"row {len(rows) + 1} has {len(values)} values, expected {len(rows[0])} "
                f"(as in line {first_line[0]})",
                line=number,
            )
        rows.append(values)
        first_line.append(number)
        _check_shape(len(rows), len(values), source)
    if not rows:
        raise KernelFileError(source, "no kernel values found (empty file?)")
    weights = np.array(rows) * scale
    return _make(weights, origin, source, line=origin_line, offset=offset)


def _make(
    weights: np.ndarray,
    origin: tuple[int, int] | None,
    source: str,
    *,
    line: int | None = None,
    offset: float = 0.0,
) -> Kernel:
    """The kernel, or a :class:`KernelFileError` at ``line`` (where the origin was given)."""
    from .errors import KernelError

    name = Path(source).name if source != "<string>" else "custom"
    try:
        if origin is None:
            return Kernel(weights, name=name, offset=offset)
        return Kernel(weights, origin=origin, name=name, offset=offset)
    except KernelError as exc:
        raise KernelFileError(source, str(exc), line=line) from None


def _parse_mat(text: str, source: str) -> Kernel:
    lines = [(i, ln.split("#", 1)[0]) for i, ln in enumerate(text.splitlines(), start=1)]
    lines = [(i, ln) for i, ln in lines if ln.strip()]
    if not lines:
        raise KernelFileError(source, "no kernel values found (empty file?)")
    head_no, head = lines[0]
    fields = _tokens(head)
    if not 2 <= len(fields) <= 4:
        raise KernelFileError(
            source, "matrix header must be 'width height [scale [offset]]'", line=head_no
        )
    nums = [_number(t, source, head_no, c) for t, c in fields]
    width, height = nums[0], nums[1]
    if width != int(width) or height != int(height) or width < 1 or height < 1:
        raise KernelFileError(
            source, "matrix width and height must be positive integers", line=head_no
        )
    width, height = int(width), int(height)
    _check_shape(height, width, source)
    scale = nums[2] if len(nums) > 2 else 1.0
    offset = nums[3] if len(nums) > 3 else 0.0
    if scale == 0:
        raise KernelFileError(source, "matrix scale is 0", line=head_no)
    data = lines[1:]
    if len(data) != height:
        where = data[-1][0] if data else head_no
        raise KernelFileError(
            source, f"header says {height} rows but {len(data)} follow", line=where
        )
    rows = []
    for number, line in data:
        tokens = _tokens(line)
        if len(tokens) != width:
            raise KernelFileError(
                source, f"row has {len(tokens)} values, header says width {width}", line=number
            )
        rows.append([_number(t, source, number, c) for t, c in tokens])
    return _make(np.array(rows) / scale, None, source, offset=offset)


def _parse_im(text: str, source: str) -> Kernel:
    body = "\n".join(ln.split("#", 1)[0] for ln in text.splitlines()).strip()
    if ";" in body:
        raise KernelFileError(source, "multiple ImageMagick kernels (';') are not supported")
    m = _IM_RE.match(body)
    if not m:
        raise KernelFileError(source, "ImageMagick kernel must start with 'WxH:' or 'WxH+X+Y:'")
    if len(m.group(1)) > 6 or len(m.group(2) or "") > 6:
        raise KernelFileError(
            source, f"ImageMagick kernel size is too large (at most {MAX_KERNEL_SIDE} a side)"
        )
    width = int(m.group(1))
    height = int(m.group(2)) if m.group(2) else width
    if width < 1 or height < 1:
        raise KernelFileError(source, "ImageMagick kernel size must be positive")
    _check_shape(height, width, source)
    origin = None
    if m.group(3) is not None:
        if len(m.group(3)) > 7 or len(m.group(4)) > 7:
            raise KernelFileError(source, "ImageMagick origin lies outside the kernel")
        origin = (int(m.group(4)), int(m.group(3)))  # +X+Y: X is the column, Y the row
        if not (0 <= origin[0] < height and 0 <= origin[1] < width):
            raise KernelFileError(
                source, f"ImageMagick origin +{origin[1]}+{origin[0]} lies outside "
                f"the {width}x{height} kernel",
            )  # fmt: skip
    else:
        origin = ((height - 1) // 2, (width - 1) // 2)
    try:
        tokens = _im_values(text, source, limit=width * height + 1)
    except KernelFileError:
        tokens = [("", 0, 0)] * (width * height + 1)  # more than the size allows
    if len(tokens) > width * height:
        raise KernelFileError(
            source, f"ImageMagick kernel {width}x{height} needs {width * height} values, "
            "got more",
        )  # fmt: skip
    if len(tokens) != width * height:
        raise KernelFileError(
            source, f"ImageMagick kernel {width}x{height} needs {width * height} values, "
            f"got {len(tokens)}",
        )  # fmt: skip
    values = [
        0.0 if t.lower() in ("nan", "-") else _number(t, source, line, col)
        for t, line, col in tokens
    ]
    return _make(np.array(values).reshape(height, width), origin, source)


def _im_values(
    text: str, source: str = "<string>", *, limit: int = MAX_KERNEL_SIDE * MAX_KERNEL_SIDE
) -> list[tuple[str, int, int]]:
    """The value tokens after an ImageMagick ``WxH:`` header, with 1-based line and column."""
    found: list[tuple[str, int, int]] = []
    after_header = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        start = 0
        if not after_header:
            if ":" not in line:
                continue
            start = line.index(":") + 1
            after_header = True
        left = limit - len(found)
        tokens = _tokens(line[start:], source, number, limit=max(left, 0))
        found += [(t, number, start + col) for t, col in tokens]
    return found


def _parse_inline(text: str) -> Kernel:
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    rows = [r for r in body.split(";")]
    return _parse_rows("\n".join(rows), "<string>")


def load_kernel_file(path: str | os.PathLike[str], fmt: str | None = None) -> Kernel:
    """Read a kernel file; the format comes from ``fmt``, the extension, or the content."""
    p = Path(path)
    source = str(path)
    if not p.exists():
        raise KernelFileError(source, "kernel file not found")
    if p.is_dir():
        raise KernelFileError(source, "is a directory, not a kernel file")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise KernelFileError(source, f"file of {size} bytes is too large for a kernel")
        data = p.read_bytes()
    except OSError as exc:
        raise KernelFileError(source, f"cannot read: {exc.strerror or exc}") from None
    fmt = fmt or FORMATS.get(p.suffix.lower())
    if fmt == "npy" or (fmt is None and data[:6] == b"\x93NUMPY"):
        return _load_npy(data, source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KernelFileError(
            source, f"not a text kernel file (undecodable byte at offset {exc.start})"
        ) from None
    if "\x00" in text:
        raise KernelFileError(source, "not a text kernel file (binary data)")
    if fmt == "txt" and _sniff(text) == "im":
        fmt = "im"  # an ImageMagick 'WxH:' string saved as .txt cannot be anything else
    return parse_kernel_text(text, source=source, fmt=fmt)


def _load_npy(data: bytes, source: str) -> Kernel:
    fh = io.BytesIO(data)
    try:  # the header first: its shape is checked before any array is allocated
        version = np.lib.format.read_magic(fh)
        header = (
            np.lib.format.read_array_header_1_0(fh)
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0(fh)
        )
    except Exception as exc:  # a malformed header raises anything (tokenize.TokenError...)
        text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise KernelFileError(source, f"not a valid .npy array ({text})") from None
    shape = tuple(int(v) for v in header[0])
    if len(shape) in (1, 2):
        rows, cols = (1, shape[0]) if len(shape) == 1 else shape
        _check_shape(rows, cols, source)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise KernelFileError(source, f"not a valid .npy array ({text})") from None
    if arr.dtype.kind not in "biuf":
        raise KernelFileError(source, f".npy array must be numeric, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise KernelFileError(source, f".npy kernel must be 1-D or 2-D, got {arr.ndim}-D")
    if arr.size == 0:
        raise KernelFileError(source, "no kernel values found (empty array)")
    shape = arr.reshape(1, -1).shape if arr.ndim == 1 else arr.shape
    _check_shape(shape[0], shape[1], source)
    if not np.all(np.isfinite(arr)):
        raise KernelFileError(source, "array holds NaN or infinite values")
    return _make(arr.astype(np.float64), None, source)


_PATHLIKE_RE = re.compile(r"[\\/]|\.(txt|kernel|csv|mat|im|npy)$", re.IGNORECASE)


def load_kernel(spec: str) -> Kernel:
    """The kernel a ``-k`` value names: a file, an ImageMagick string, a matrix, or a built-in.

    >>> load_kernel("3x3: 0,1,0 1,-4,1 0,1,0").sum
    0.0
    >>> load_kernel("box:size=2").origin
    (1, 1)
    """
    text = spec.strip()
    if not text:
        raise UsageError("empty kernel spec")
    if os.path.isfile(text) or os.path.isdir(text):
        return load_kernel_file(text)
    if _IM_RE.match(text):
        return _parse_im(text, "<string>")
    if text.startswith("[") or (";" in text and re.fullmatch(r"[\d\s.,;eE+\-/\[\]]+", text)):
        return _parse_inline(text)
    if _PATHLIKE_RE.search(text):
        raise KernelFileError(text, "kernel file not found")
    return parse_spec(text)


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def format_kernel(kernel: Kernel, fmt: str) -> str | bytes:
    """The kernel in one of :data:`WRITE_FORMATS`; ``txt``, ``csv`` and ``im`` keep the origin.

    ``mat`` (libvips) and ``npy`` cannot store an origin: they are read back with
    the default (centre) origin.
    """
    w = kernel.weights
    rows_txt = [[_fmt(v) for v in row] for row in w]
    orow, ocol = kernel.origin
    offset = f"# offset: {_fmt(kernel.offset)}\n" if kernel.offset else ""
    if fmt == "txt":
        lines = [f"# convcli kernel: {kernel.name}", f"# origin: {orow},{ocol}"]
        lines += [" ".join(r) for r in rows_txt]
        return offset + "\n".join(lines) + "\n"
    if fmt == "csv":
        return (
            offset + f"# origin: {orow},{ocol}\n" + "\n".join(",".join(r) for r in rows_txt) + "\n"
        )
    if fmt == "mat":
        head = f"{w.shape[1]} {w.shape[0]} 1 {_fmt(kernel.offset)}\n"
        return head + "\n".join(" ".join(r) for r in rows_txt) + "\n"
    if fmt == "im":
        values = " ".join(",".join(r) for r in rows_txt)
        return f"{w.shape[1]}x{w.shape[0]}+{ocol}+{orow}: {values}\n"
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, w, allow_pickle=False)
        return buf.getvalue()
    raise UsageError(f"kernel format must be one of {', '.join(WRITE_FORMATS)}, got '{fmt}'")


def save_kernel(kernel: Kernel, path: str | os.PathLike[str], fmt: str | None = None) -> None:
    """Write a kernel file (format from ``fmt`` or the extension), atomically.

    Refused (:class:`UsageError`, nothing written): a ``fmt`` that contradicts the
    file's extension (the file would not load back), and a ``mat`` or ``npy``
    file for a kernel whose origin is not the default one, which those formats
    cannot store (the kernel would load back shifted).
    """
    p = Path(path)
    by_extension = FORMATS.get(p.suffix.lower())
    if fmt is not None and by_extension is not None and fmt != by_extension:
        raise UsageError(
            f"'{p.name}' is a .{by_extension} name but the format asked for is {fmt}; "
            "it would not load back: make the extension match"
        )
    fmt = fmt or by_extension
    if fmt is None and p.is_dir():
        raise PathError(f"{path}: is a folder; give a kernel file name")
    if fmt is None:
        raise UsageError(
            f"cannot tell the kernel format from '{p.name}'; use .txt, .csv, .mat, .im or .npy"
        )
    rows, cols = kernel.shape
    default = (rows // 2, cols // 2)
    if fmt in ("im", "npy") and kernel.offset:
        raise UsageError(
            f"a .{fmt} file cannot store the kernel's offset ({kernel.offset:g}): use .txt, "
            ".csv or .mat"
        )
    if fmt in ("mat", "npy") and kernel.origin != default:
        raise UsageError(
            f"a .{fmt} file cannot store the kernel's origin (row {kernel.origin[0]}, col "
            f"{kernel.origin[1]}; it would load back at the default row {default[0]}, col "
            f"{default[1]}, shifting every result): use .txt, .csv or .im"
        )
    data = format_kernel(kernel, fmt)
    try:
        write_atomically(p, data if isinstance(data, bytes) else data.encode())
    except OSError as exc:
        raise KernelFileError(p, f"cannot write ({exc.strerror or exc})") from None
