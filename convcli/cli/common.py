"""What every convcli command shares: error handling, option definitions (each defined
once, here), shell completion, and small helpers for paths and reports."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

BOUNDARY_HELP = (
    "Border extension: reflect (default; d c b a|a b c d), constant (--cval), nearest "
    "(edge/replicate), mirror (reflect101), wrap (periodic/tile)."
)


CVAL_HELP = (
    "Value outside the image for --boundary constant, on the 0..1 scale of the pixels "
    "(0 black, 1 white; 8- and 16-bit images are scaled to 0..1)."
)


def handle_errors(fn: F) -> F:
    """Run a command body, mapping convcli errors to ``Error: ...`` and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import ConvcliError

        debug = bool(kwargs.pop("debug", False))
        try:
            return fn(*args, **kwargs)
        except ConvcliError as exc:
            if debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (errors.Terminated)
            if debug:
                raise
            code = getattr(exc, "exit_code", 130)
            click.echo(f"Error: {'terminated' if code == 143 else 'interrupted'}", err=True)
            sys.exit(code)
        except MemoryError:
            if debug:
                raise
            click.echo(
                "Error: out of memory (try --precision float32 or a smaller image)", err=True
            )
            sys.exit(1)
        except OSError as exc:  # a file operation no more specific error caught
            if debug:
                raise
            from ..errors import one_line

            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {one_line(where + str(exc.strerror or exc))}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def debug_option(fn: F) -> F:
    return click.option(
        "--debug", is_flag=True, hidden=False, help="Show the Python traceback on errors."
    )(fn)


def complete_kernel(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for -k: built-in names (``gaussian:``...), and kernel files."""
    from click.shell_completion import CompletionItem

    from ..kernels import BUILTINS

    names = [CompletionItem(n) for n in sorted(BUILTINS) if n.startswith(incomplete)]
    return names + [CompletionItem(incomplete, type="file")]


def complete_boundary(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for --boundary: the five modes, then their aliases."""
    from click.shell_completion import CompletionItem

    from ..backends.borders import BOUNDARY_MODES, MODE_ALIASES

    names = [*BOUNDARY_MODES, *sorted(MODE_ALIASES)]
    return [CompletionItem(n) for n in names if n.startswith(incomplete.lower())]


def verify_option(fn: F) -> F:
    """``--verify`` (apply, blur, sharpen, edge, batch)."""
    return click.option(
        "--verify",
        is_flag=True,
        help="Compute the result again on the other backend (fft for direct, direct for "
        "fft) and compare, in float and in output levels, against the rounding bound; "
        "exit 1 (and write nothing) if it is exceeded. Shown with --verbose; in batch "
        "reports.",
    )(fn)


def peers_options(fn: F) -> F:
    """``probe --peers``, ``--json``, ``--markdown``."""
    for decorator in reversed(
        [
            click.option(
                "--peers",
                is_flag=True,
                help="Probe the other libraries installed (scipy, OpenCV, Pillow, PyTorch, the "
                "vips and ImageMagick CLIs) and say what each really computes.",
            ),
            click.option("--json", "as_json", is_flag=True, help="With --peers: JSON on stdout."),
            click.option(
                "--markdown", is_flag=True, help="With --peers: a Markdown table (the README's)."
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


class Fraction01(click.ParamType):
    """A value on the pixels' 0..1 scale, or a percentage of it (``50%``)."""

    name = "value"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        import math

        text = str(value).strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(f"'{value}' is not a number or a percentage", param, ctx)
        if not math.isfinite(number):
            self.fail(f"'{value}' is not finite", param, ctx)
        return number


class Colour(click.ParamType):
    """A colour: a name, #rgb, #rrggbb or R,G,B (0..255), as (r, g, b) on 0..1."""

    name = "colour"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from ..errors import UsageError
        from ..process import parse_colour

        if isinstance(value, tuple):
            return value
        try:
            return parse_colour(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


#: Each option of the filtering and encoding settings, defined once (every command that
#: has it uses this object).
#: One kernel (compare, identify): ``-k`` as apply reads it, given once.
SINGLE_KERNEL_OPTION = click.option(
    "-k",
    "--kernel",
    "kernel_spec",
    required=True,
    metavar="KERNEL",
    help="Built-in spec, kernel file or ImageMagick string (as for apply).",
    shell_complete=complete_kernel,
)
BACKEND_OPTION = click.option(
    "--backend",
    type=click.Choice(["auto", "direct", "fft"]),
    default="auto",
    show_default=True,
    help="auto picks the faster by a measured cost model.",
)
BOUNDARY_OPTION = click.option(
    "--boundary",
    "mode",
    default="reflect",
    show_default=True,
    metavar="MODE",
    help=BOUNDARY_HELP,
    shell_complete=complete_boundary,
)
CVAL_OPTION = click.option(
    "--cval",
    type=float,
    default=0.0,
    show_default=True,
    help=CVAL_HELP,
)
RANGE_OPTION = click.option(
    "--range",
    "range_policy",
    type=click.Choice(["clip", "abs", "offset", "rescale", "none"]),
    default=None,
    help="Out-of-range results: clip (default for 8/16-bit), abs, offset "
    "(+half range), rescale (min..max), none (float output only).",
)
DEPTH_OPTION = click.option(
    "--depth",
    type=click.Choice(["8", "16", "float"]),
    default=None,
    help="Output sample depth (default: the input's).",
)
PRECISION_OPTION = click.option(
    "--precision",
    type=click.Choice(["float32", "float64"]),
    default="float32",
    show_default=True,
    help="Computation precision.",
)
ALPHA_OPTION = click.option(
    "--alpha",
    "alpha_mode",
    type=click.Choice(["premultiply", "plain"]),
    default="premultiply",
    show_default=True,
    help="premultiply colour by alpha while filtering (no dark fringes), or "
    "filter alpha as a plain channel.",
)
NAN_OPTION = click.option(
    "--nan",
    "nan_policy",
    type=click.Choice(["refuse", "zero"]),
    default="refuse",
    show_default=True,
    help="NaN or infinite samples in a float image: refuse it (naming how many), or "
    "replace them by 0.",
)
BIAS_OPTION = click.option(
    "--bias",
    type=Fraction01(),
    default=0.0,
    metavar="B",
    help="Add B to every result before the range step, on the pixels' 0..1 scale or as a "
    "percentage (0.5 or 50%: mid-grey; ImageMagick's -bias). A kernel file's own offset "
    "(libvips .mat: 'w h scale offset') is applied too.",
)
BACKGROUND_OPTION = click.option(
    "--background",
    type=Colour(),
    default=None,
    metavar="COLOR",
    help="Flatten alpha onto COLOR after filtering (white, black, #rrggbb, R,G,B): the "
    "output has no alpha, so it can be JPEG or BMP.",
)
QUALITY_OPTION = click.option(
    "--quality", type=click.IntRange(1, 100), default=None, help="JPEG/WebP quality."
)
MAX_PIXELS_OPTION = click.option(
    "--max-pixels",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Refuse images of more than N pixels, before decoding (default: 89,478,485, "
    "Pillow's decompression-bomb limit; 0: no limit).",
)
COMPRESS_OPTION = click.option(
    "--compress-level",
    type=click.IntRange(0, 9),
    default=None,
    help="PNG compression level: 0 none, 1-3 fast (ISA-L; default 3), 4-9 zlib (smaller, slower).",
)
TIFF_COMPRESSION_OPTION = click.option(
    "--tiff-compression",
    type=click.Choice(["deflate", "lzw", "zstd", "packbits", "none"]),
    default=None,
    help="TIFF compression (default deflate); deflate, lzw and zstd use predictor 2 on "
    "8/16-bit samples. With several outputs, for the TIFF ones.",
)

#: The options that decide how images are filtered and encoded (apply, blur, ..., batch).
_FILTER_SETTINGS = [
    BACKEND_OPTION,
    BOUNDARY_OPTION,
    CVAL_OPTION,
    RANGE_OPTION,
    DEPTH_OPTION,
    PRECISION_OPTION,
    ALPHA_OPTION,
    NAN_OPTION,
    BIAS_OPTION,
    BACKGROUND_OPTION,
    QUALITY_OPTION,
    MAX_PIXELS_OPTION,
    COMPRESS_OPTION,
    TIFF_COMPRESSION_OPTION,
]


def filter_settings(fn: F) -> F:
    """The filtering and encoding options, without the output options."""
    for decorator in reversed(_FILTER_SETTINGS):
        fn = decorator(fn)
    return fn


class ImageFormat(click.ParamType):
    """An output format name: png, jpeg or jpg, tiff or tif, webp, bmp (any case)."""

    name = "format"
    NAMES = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "tiff": "tiff", "tif": "tiff",
             "webp": "webp", "bmp": "bmp"}  # fmt: skip

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        key = str(value).strip().lower().lstrip(".")
        if key not in self.NAMES:
            self.fail(f"'{value}' is not one of png, jpeg (jpg), tiff (tif), webp, bmp", param, ctx)
        return self.NAMES[key]

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in self.NAMES if n.startswith(incomplete.lower())]


#: Where results go: one file, or a folder for several inputs (every filtering command).
_OUTPUT_OPTIONS = [
    click.option(
        "-o",
        "--output",
        type=click.Path(allow_dash=True),
        help="Output image (format by extension; '-' for stdout with --format), replaced if "
        "it exists, as cp does. With several inputs or a folder: the output folder (a name "
        "ending in / or an existing folder).",
    ),
    click.option(
        "--in-place",
        is_flag=True,
        help="Overwrite INPUT with the result (atomically; one file only). Off by default.",
    ),
    click.option(
        "--format",
        "fmt",
        type=ImageFormat(),
        default=None,
        metavar="FMT",
        help="Output format: png, jpeg (jpg), tiff (tif), webp, bmp (default: the output's "
        "extension; with several inputs, each input's own).",
    ),
    click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Say which backend ran and why, timings, and clipped values.",
    ),
    verify_option,
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="One file: print a JSON report of the run on stdout (sizes, each kernel's "
        "backend and path, the range step, --verify's check). Many files: use --report.",
    ),
]

#: Options for several inputs or folders (batch's engine: parallel, atomic, resumable).
_MANY_FILES_OPTIONS = [
    click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders (mirrored)."),
    click.option(
        "--pattern",
        "patterns",
        multiple=True,
        metavar="GLOB",
        help="In folders, only files matching GLOB (name or relative path); repeatable.",
    ),
    click.option(
        "--jobs",
        "-j",
        type=click.IntRange(1, 256),
        default=None,
        help="Parallel worker processes (default: the number of cores).",
    ),
    click.option("--skip-existing", is_flag=True, help="Keep outputs that exist (resume a batch)."),
    click.option("--overwrite", is_flag=True, help="Replace outputs that exist."),
    click.option(
        "--report",
        "report_path",
        type=click.Path(),
        default=None,
        help="Write a JSON report of every file, the options and library versions.",
    ),
    click.option(
        "--executor",
        type=click.Choice(["local", "dask"]),
        default="local",
        show_default=True,
        help="local processes, or a Dask cluster (convcli[dask]).",
    ),
    click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster).",
    ),
    click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors."),
]

#: The parameter names of :data:`_MANY_FILES_OPTIONS`, with their defaults.
MANY_FILES_DEFAULTS: dict[str, Any] = {
    "recursive": False, "patterns": (), "jobs": None, "skip_existing": False,
    "overwrite": False, "report_path": None, "executor": "local", "scheduler": None,
    "quiet": False,
}  # fmt: skip

#: The kernel options of apply and batch.
_KERNEL_OPTIONS = [
    click.option(
        "-k",
        "--kernel",
        "kernel_specs",
        multiple=True,
        required=True,
        metavar="KERNEL",
        help="Built-in (NAME[:key=value,...]), kernel file (.txt .csv .mat .im .npy) or "
        "ImageMagick string ('3x3: 0,1,0 1,-4,1 0,1,0'). Repeat to apply in sequence.",
        shell_complete=complete_kernel,
    ),
    click.option(
        "--op",
        type=click.Choice(["convolve", "correlate"]),
        default="convolve",
        show_default=True,
        help="convolve flips the kernel; correlate does not.",
    ),
    click.option("--normalize", is_flag=True, help="Divide each kernel by its sum (sum 0: error)."),
]


def _decorate(fn: F, decorators: list[Callable[[F], F]]) -> F:
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def kernel_options(fn: F) -> F:
    """-k/--kernel, --op and --normalize (apply, batch)."""
    return _decorate(fn, _KERNEL_OPTIONS)


def filter_options(fn: F) -> F:
    """Every option of the filtering commands (apply, blur, sharpen, edge, batch): the
    filtering and encoding settings, the output, and the options for several inputs."""
    return _decorate(fn, [*_FILTER_SETTINGS, *_OUTPUT_OPTIONS, *_MANY_FILES_OPTIONS, debug_option])


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_report_path(path: str, inputs: list[str]) -> None:
    """Refuse, before any work, a --report path that cannot be written or lies in the input
    (inside an input folder, or onto an input file)."""
    from pathlib import Path

    from ..batch import is_same_or_inside
    from ..errors import PathError

    target = Path(os.path.abspath(path))
    if not target.parent.is_dir():
        raise PathError(f"{path}: report folder '{target.parent}' does not exist")
    if target.is_dir():
        raise PathError(f"{path}: report path is a folder")
    for given in inputs:
        if Path(given).is_dir() and is_same_or_inside(target, Path(given)):
            raise PathError(f"{path}: the report would be written inside the input folder")
        if _same_file(str(target), given):
            raise PathError(f"{path}: the report would replace an input")


def _warn_about_cval(mode: str, cval: float, images: str) -> None:
    """Warn when a --cval looks like a 0..255 value (pixels are filtered on 0..1)."""
    from .. import console

    if mode == "constant" and not 0.0 <= cval <= 1.0:
        console.warning(
            f"--cval {cval:g} is outside 0..1, the scale {images} are filtered on "
            "(0 black, 1 white); did you mean a fraction, e.g. 128 of 255 = 0.5?"
        )


def _write_text_atomically(path: str, text: str) -> None:
    from ..atomic import write_atomically
    from ..errors import ImageWriteError

    try:
        write_atomically(path, (text + "\n").encode())
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write report ({exc.strerror or exc})") from None
