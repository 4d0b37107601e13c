"""The ``convcli`` command line: click commands over the library, no numeric code.

Each command resolves its options, calls the library, and turns a
:class:`~convcli.errors.ConvcliError` into one line ``Error: ...`` on stderr
with exit code 1 (run-time failure) or 2 (bad command line).  ``--debug``
shows the traceback instead.  Library modules are imported inside the
commands so that ``--help`` answers at once.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from . import __version__

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
        from .errors import ConvcliError

        debug = bool(kwargs.pop("debug", False))
        try:
            return fn(*args, **kwargs)
        except ConvcliError as exc:
            if debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
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
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def debug_option(fn: F) -> F:
    return click.option(
        "--debug", is_flag=True, hidden=False, help="Show the Python traceback on errors."
    )(fn)


#: Options that decide how images are filtered and encoded (apply, blur, ..., batch).
_FILTER_SETTINGS = [
    click.option(
        "--backend",
        type=click.Choice(["auto", "direct", "fft"]),
        default="auto",
        show_default=True,
        help="auto picks the faster by a measured cost model.",
    ),
    click.option(
        "--boundary",
        "mode",
        default="reflect",
        show_default=True,
        metavar="MODE",
        help=BOUNDARY_HELP,
    ),
    click.option(
        "--cval",
        type=float,
        default=0.0,
        show_default=True,
        help=CVAL_HELP,
    ),
    click.option(
        "--range",
        "range_policy",
        type=click.Choice(["clip", "abs", "offset", "rescale", "none"]),
        default=None,
        help="Out-of-range results: clip (default for 8/16-bit), abs, offset "
        "(+half range), rescale (min..max), none (float output only).",
    ),
    click.option(
        "--depth",
        type=click.Choice(["8", "16", "float"]),
        default=None,
        help="Output sample depth (default: the input's).",
    ),
    click.option(
        "--precision",
        type=click.Choice(["float32", "float64"]),
        default="float32",
        show_default=True,
        help="Computation precision.",
    ),
    click.option(
        "--alpha",
        "alpha_mode",
        type=click.Choice(["premultiply", "plain"]),
        default="premultiply",
        show_default=True,
        help="premultiply colour by alpha while filtering (no dark fringes), or "
        "filter alpha as a plain channel.",
    ),
    click.option(
        "--nan",
        "nan_policy",
        type=click.Choice(["refuse", "zero"]),
        default="refuse",
        show_default=True,
        help="NaN or infinite samples in a float image: refuse it (naming how many), or "
        "replace them by 0.",
    ),
    click.option("--quality", type=click.IntRange(1, 100), default=None, help="JPEG/WebP quality."),
    click.option(
        "--max-pixels",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Refuse images of more than N pixels, before decoding (default: 89,478,485, "
        "Pillow's decompression-bomb limit; 0: no limit).",
    ),
    click.option(
        "--compress-level",
        type=click.IntRange(0, 9),
        default=None,
        help="PNG compression level: 0 none, 1-3 fast (ISA-L; default 3), 4-9 zlib "
        "(smaller, slower).",
    ),
]


def filter_settings(fn: F) -> F:
    """The filtering and encoding options, without the output options."""
    for decorator in reversed(_FILTER_SETTINGS):
        fn = decorator(fn)
    return fn


def filter_options(fn: F) -> F:
    """Options shared by every command that filters an image."""
    decorators = [
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, allow_dash=True),
            help="Output image (format by extension; '-' for stdout with --format).",
        ),
        click.option(
            "--in-place",
            is_flag=True,
            help="Overwrite INPUT with the result (atomically). Off by default.",
        ),
        click.option(
            "--format",
            "fmt",
            default=None,
            metavar="FMT",
            help="Output format when the extension can't tell (png, jpeg, tiff, webp, bmp).",
        ),
        click.option(
            "-v",
            "--verbose",
            is_flag=True,
            help="Say which backend ran and why, timings, and clipped values.",
        ),
        debug_option,
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return filter_settings(fn)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _resolve_output(input_path: str, output: str | None, in_place: bool) -> str:
    from .errors import UsageError

    if in_place:
        if input_path == "-":
            raise UsageError("--in-place needs an input file, not stdin")
        if output is not None and not _same_file(input_path, output):
            raise UsageError("give either -o/--output or --in-place, not both")
        return input_path
    if output is None:
        raise UsageError("missing -o/--output (or --in-place to overwrite the input)")
    if input_path != "-" and output != "-" and _same_file(input_path, output):
        raise UsageError(
            f"output '{output}' is the input file; refusing to overwrite it "
            "(use --in-place if you mean to)"
        )
    return output


def _run_filter(
    input_path: str,
    kernels_or_edge: Any,
    *,
    op: str,
    output: str | None,
    in_place: bool,
    backend: str,
    mode: str,
    cval: float,
    range_policy: str | None,
    depth: str | None,
    precision: str,
    alpha_mode: str,
    nan_policy: str,
    fmt: str | None,
    quality: int | None,
    compress_level: int | None,
    max_pixels: int | None,
    verbose: bool,
    normalize: bool = False,
) -> None:
    from . import console
    from .backends.borders import normalize_mode
    from .pipeline.files import filter_file
    from .process import FilterOptions

    dest = _resolve_output(input_path, output, in_place)
    options = FilterOptions(
        op=op,
        backend=backend,
        mode=normalize_mode(mode),
        cval=cval,
        normalize=normalize,
        range_policy=range_policy,
        dtype=precision,
        alpha=alpha_mode,
        depth=depth,
        nonfinite=nan_policy,
    )

    def on_read(stored: Any) -> None:
        for note in stored.meta.notes:
            console.warning(f"{input_path}: {note}")
        if stored.depth != "float":
            _warn_about_cval(options.mode, cval, "pixels")

    edge = kernels_or_edge if isinstance(kernels_or_edge, str) else None
    result = filter_file(
        input_path,
        dest,
        None if edge else kernels_or_edge,
        options,
        edge=edge,
        format=fmt,
        quality=quality,
        compress_level=compress_level,
        max_pixels=max_pixels,
        on_read=on_read,
    )
    report = result.filter
    if verbose:
        console.info(
            f"read {input_path}: {result.width}x{result.height} {result.bands}, "
            + (f"{result.depth}-bit" if result.depth != "float" else "float")
        )
        for step in report.steps:
            k = step.kernel
            console.info(
                f"{op} with {k.name} ({k.shape[0]}x{k.shape[1]}, origin {k.origin}, "
                f"sum {k.sum:.6g}, {k.symmetry}): {step.plan.backend} "
                f"[{step.plan.method}] - {step.plan.reason}; {step.seconds * 1000:.1f} ms"
                " (thread time, all strips)"
            )
        console.info(_range_line(report))
        timing = (
            f"read {result.read_s * 1000:.0f} ms, filter and write "
            f"{result.filter_s * 1000:.0f} ms (streamed)"
            if result.streamed
            else f"read {result.read_s * 1000:.0f} ms, filter {result.filter_s * 1000:.0f} ms, "
            f"write {result.write_s * 1000:.0f} ms"
        )
        console.info(
            f"wrote {dest} ({report.depth}{'-bit' if report.depth != 'float' else ''}); "
            f"strips of {result.strip_rows} rows; {timing}"
        )


def _range_line(report: Any) -> str:
    """The --verbose line on how results were brought into the output range."""
    spanned = f"results spanned {report.value_min:.4g}..{report.value_max:.4g}"
    if report.range_policy == "none":
        return f"range none: {spanned}; written as they are (float output)"
    pct = 100.0 * report.out_of_range / max(report.samples, 1)
    outside = f"{report.out_of_range} of {report.samples} samples ({pct:.2f}%)"
    what = {
        "clip": "were out of range and clipped",
        "abs": "were out of range after taking absolute values, and clipped",
        "offset": "were out of range after adding half the range, and clipped",
        "rescale": "were out of range after stretching min..max (rounding only), and clipped",
    }[report.range_policy]
    return f"range {report.range_policy}: {spanned}; {outside} {what}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convcli")
def main() -> None:
    """Blur, sharpen and edge-detect images with exact convolution or correlation.

    \b
    Examples:
      convcli blur photo.jpg -o soft.jpg --sigma 3
      convcli apply photo.jpg -k sobel:axis=x --op correlate --range offset -o gx.png
      convcli kernels show gaussian:sigma=1
    """


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-k",
    "--kernel",
    "kernel_specs",
    multiple=True,
    required=True,
    metavar="KERNEL",
    help="Built-in (NAME[:key=value,...]), kernel file (.txt .csv .mat .im .npy) or "
    "ImageMagick string ('3x3: 0,1,0 1,-4,1 0,1,0'). Repeat to apply in sequence.",
)
@click.option(
    "--op",
    type=click.Choice(["convolve", "correlate"]),
    default="convolve",
    show_default=True,
    help="convolve flips the kernel; correlate does not.",
)
@click.option("--normalize", is_flag=True, help="Divide each kernel by its sum (sum 0: error).")
@filter_options
@handle_errors
def apply(
    input_path: str, kernel_specs: tuple[str, ...], op: str, normalize: bool, **opts: Any
) -> None:
    """Filter INPUT with one or more kernels and write the result.

    \b
    Examples:
      convcli apply photo.jpg -k gaussian:sigma=2 -o blurred.png
      convcli apply photo.jpg -k kernels/emboss.txt --op correlate -o emboss.png
      convcli apply scan.tif -k "3x3: 0,-1,0 -1,5,-1 0,-1,0" -o sharp.tif --verbose
      convcli apply photo.png -k sobel:axis=x --range offset -o gx.png
    """
    from .kernel_io import load_kernel

    kernels = [load_kernel(spec) for spec in kernel_specs]
    _run_filter(input_path, kernels, op=op, normalize=normalize, **opts)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--sigma",
    type=float,
    default=2.0,
    show_default=True,
    help="Gaussian standard deviation in pixels.",
)
@click.option(
    "--box",
    "box_size",
    type=int,
    default=None,
    help="Use a SIZE x SIZE box (mean) filter instead of a Gaussian.",
)
@filter_options
@handle_errors
def blur(input_path: str, sigma: float, box_size: int | None, **opts: Any) -> None:
    """Blur INPUT with a Gaussian (or a box) filter.

    \b
    Examples:
      convcli blur photo.jpg -o soft.jpg --sigma 3
      convcli blur photo.jpg -o mean.png --box 5
    """
    from .kernels import builtin_kernel

    kernel = (
        builtin_kernel("box", size=box_size)
        if box_size is not None
        else builtin_kernel("gaussian", sigma=sigma)
    )
    _run_filter(input_path, [kernel], op="convolve", **opts)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--amount",
    type=float,
    default=1.0,
    show_default=True,
    help="Strength: 0 leaves the image unchanged.",
)
@click.option(
    "--sigma",
    type=float,
    default=None,
    help="Unsharp mask with a Gaussian of this sigma (default: the 3x3 sharpen kernel).",
)
@filter_options
@handle_errors
def sharpen(input_path: str, amount: float, sigma: float | None, **opts: Any) -> None:
    """Sharpen INPUT (3x3 sharpen kernel, or an unsharp mask with --sigma).

    \b
    Examples:
      convcli sharpen photo.jpg -o crisp.jpg
      convcli sharpen photo.jpg -o crisp.jpg --sigma 2 --amount 0.8
    """
    from .kernels import builtin_kernel

    kernel = (
        builtin_kernel("sharpen", amount=amount)
        if sigma is None
        else builtin_kernel("unsharp", sigma=sigma, amount=amount)
    )
    _run_filter(input_path, [kernel], op="convolve", **opts)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--operator",
    type=click.Choice(["sobel", "prewitt", "scharr", "laplacian", "log"]),
    default="sobel",
    show_default=True,
    help="sobel/prewitt/scharr: gradient magnitude; laplacian/log: |response|.",
)
@filter_options
@handle_errors
def edge(input_path: str, operator: str, **opts: Any) -> None:
    """Detect edges in INPUT: gradient magnitude or |Laplacian|.

    \b
    Examples:
      convcli edge photo.jpg -o edges.png
      convcli edge photo.jpg -o edges.png --operator laplacian
    """
    _run_filter(input_path, operator, op="convolve", **opts)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-k",
    "--kernel",
    "kernel_spec",
    required=True,
    metavar="KERNEL",
    help="Built-in spec, kernel file or ImageMagick string (as for apply).",
)
@click.option(
    "-o",
    "--output",
    "panel_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the side-by-side panel image here (PNG recommended).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "direct", "fft"]),
    default="auto",
    show_default=True,
    help="The same backend computes all three results.",
)
@click.option(
    "--boundary", "mode", default="reflect", show_default=True, metavar="MODE", help=BOUNDARY_HELP
)
@click.option("--cval", type=float, default=0.0, show_default=True, help=CVAL_HELP)
@click.option(
    "--alpha",
    "alpha_mode",
    type=click.Choice(["premultiply", "plain"]),
    default="premultiply",
    show_default=True,
    help="With alpha: premultiply colour by alpha while filtering (as apply does), or "
    "filter alpha as a plain channel.",
)
@click.option(
    "--range",
    "range_policy",
    type=click.Choice(["clip", "abs", "offset", "rescale"]),
    default=None,
    help="How signed results are shown and counted (default: offset for zero-sum "
    "kernels, else clip).",
)
@click.option(
    "--precision", type=click.Choice(["float32", "float64"]), default="float32", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print the stable JSON report on stdout.")
@click.option(
    "--expect",
    type=click.Choice(["equal", "negated", "different"]),
    default=None,
    help="Exit 0 when the verdict is this, 1 when not (for scripts and CI).",
)
@click.option(
    "--save-results",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Also write the convolution, correlation and "
    "correlation-with-rotated-kernel images into DIR (as apply would write them).",
)
@click.option(
    "--raw-results",
    is_flag=True,
    help="With --save-results: write the raw float results instead, unmapped and "
    "unrounded, one float32 .tif per channel.",
)
@click.option(
    "--crop",
    default=None,
    metavar="X,Y,W,H",
    help="The panel's loupe: this region at full resolution (default: around the largest "
    "difference, for images shown reduced).",
)
@debug_option
@handle_errors
def compare(
    input_path: str,
    kernel_spec: str,
    panel_path: str | None,
    backend: str,
    mode: str,
    cval: float,
    alpha_mode: str,
    range_policy: str | None,
    precision: str,
    as_json: bool,
    expect: str | None,
    save_results: str | None,
    raw_results: bool,
    crop: str | None,
) -> None:
    """Prove when convolution equals correlation: both, their difference, and a verdict.

    Computes conv = convolve(I, K), corr = correlate(I, K) and flip =
    correlate(I, rot180 K) with the same backend and boundary, and conv - corr directly
    with the difference kernel rot180 K - K (the verdict's evidence, never dependent on
    the backend); prints the kernel, the differences and a verdict (EQUAL, NEGATED or
    DIFFERENT), and draws a panel: the verdict, input | convolution | correlation |
    |difference|, a full-resolution loupe, and the flip identity. With alpha, colour is
    premultiplied by alpha before filtering (as apply does) and pixels are counted by
    what is visible (over black and over white). Runs strip by strip in bounded memory,
    saved results included.

    \b
    Examples:
      convcli compare sample_images/coffee.jpg -k emboss -o panel.png
      convcli compare photo.png -k sobel:axis=x --json --expect negated
      convcli compare photo.jpg -k emboss -o panel.png --crop 1200,800,160,160
    """
    import json
    from pathlib import Path

    from . import console
    from .backends.borders import normalize_mode
    from .compare import compare_samples, default_display_policy
    from .errors import UsageError
    from .image_io import read_samples, write_image
    from .kernel_io import load_kernel
    from .panel import PanelViews, ResultFiles

    if raw_results and save_results is None:
        raise UsageError("--raw-results goes with --save-results DIR")
    _reuse_freed_memory()
    region = None
    if crop is not None:
        parts = crop.replace(" ", "").split(",")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise UsageError(f"--crop '{crop}': expected X,Y,W,H (four whole numbers)")
        region = tuple(int(p) for p in parts)
    kernel = load_kernel(kernel_spec)
    boundary = normalize_mode(mode)
    policy = range_policy or default_display_policy(kernel)
    settings = dict(
        backend=backend, mode=boundary, cval=cval, dtype=precision, range_policy=policy,
        alpha=alpha_mode,
    )  # fmt: skip
    if panel_path is not None and input_path != "-" and _same_file(input_path, panel_path):
        raise UsageError(f"panel '{panel_path}' is the input file; refusing to overwrite it")
    with read_samples(input_path) as stored:  # strip by strip, panel and saved results too
        for note in stored.meta.notes:
            console.warning(f"{input_path}: {note}")
        views = None
        if panel_path is not None:
            try:
                views = PanelViews(stored, policy, alpha_mode, crop=region)
            except UsageError as exc:
                raise UsageError(f"{input_path}: {exc}") from None
        elif region is not None:
            raise UsageError("--crop goes with -o PANEL")
        if save_results is None:
            result = compare_samples(stored, kernel, depth=stored.depth, visit=views, **settings)
        else:
            stem = Path(input_path).stem if input_path != "-" else "stdin"
            with ResultFiles(save_results, stem, stored, raw=raw_results) as files:
                result = compare_samples(stored, kernel, depth=stored.depth, visit=views,
                                         save=files, raw=raw_results, **settings)  # fmt: skip
    if views is not None:
        write_image(views.image(result), panel_path)
    report = result.to_dict()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        console.show_comparison(report, kernel.weights, kernel.origin)
    if expect is not None and result.verdict != expect:
        click.echo(f"Error: verdict is {result.verdict}, expected {expect}", err=True)
        sys.exit(1)


def _reuse_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse (a 128 MiB top pad) instead of handing each
    strip's buffers back to the system and faulting fresh pages in for the next strip
    (12-MP emboss compare: about 220k minor page faults -> 16k, 1.07 s -> 0.67 s in one run).
    A no-op where there is no mallopt (not glibc)."""
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-2, 128 << 20)  # M_TOP_PAD
    except (OSError, AttributeError, TypeError):
        pass


def _numbers(text: str, what: str) -> list[float]:
    """Finite numbers separated by commas or spaces; fractions like 1/3 allowed."""
    from .errors import UsageError
    from .kernel_io import parse_number

    values = []
    for token in text.replace(";", ",").replace(" ", ",").split(","):
        if not token:
            continue
        try:
            value = parse_number(token)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"{what} must be numbers separated by commas, got '{text}'") from None
        if not math.isfinite(value):
            raise UsageError(f"{what} must be finite numbers, got '{token}'")
        values.append(value)
    if not values:
        raise UsageError(f"{what} is empty")
    return values


@main.command()
@click.option("--signal", default=None, metavar="X1,X2,...", help="A 1-D input signal.")
@click.option(
    "--image",
    "image_spec",
    default=None,
    metavar="IMAGE_OR_MATRIX",
    help="A small 2-D input: an image file, a matrix file, or '[1 2; 3 4]'.",
)
@click.option(
    "--kernel",
    "kernel_spec",
    required=True,
    metavar="KERNEL",
    help="Weights '5,6,7' for a signal, or any kernel spec.",
)
@click.option(
    "--op", type=click.Choice(["convolve", "correlate"]), default="convolve", show_default=True
)
@click.option(
    "--mode",
    type=click.Choice(["full", "same", "valid"]),
    default="full",
    show_default=True,
    help="Output size: every overlap, input size, or kernel inside.",
)
@click.option(
    "--save-matrix",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the matrix M (.npy or .csv).",
)
@debug_option
@handle_errors
def explain(
    signal: str | None,
    image_spec: str | None,
    kernel_spec: str,
    op: str,
    mode: str,
    save_matrix: str | None,
) -> None:
    """Show a convolution as sliding dot products and as a matrix product M @ x.

    M has the kernel's weights tied along its diagonals (Toeplitz in 1-D, doubly
    block Toeplitz in 2-D) and zeros elsewhere; the command checks M @ x against
    convcli's own filter.

    \b
    Examples:
      convcli explain --signal 1,2,3,4 --kernel 5,6,7 --mode full
      convcli explain --signal 1,2,3,4 --kernel 5,6,7 --op correlate --mode valid
      convcli explain --image "[1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16]" --kernel laplacian
    """
    import numpy as np

    from . import console
    from .algebra import check_matrix_path
    from .algebra import explain as run_explain
    from .algebra import save_matrix as write_matrix
    from .errors import UsageError
    from .kernel_io import load_kernel
    from .kernels import Kernel

    if (signal is None) == (image_spec is None):
        raise UsageError("give exactly one of --signal or --image")
    if save_matrix is not None:
        check_matrix_path(save_matrix)  # before any work
    if signal is not None:
        data = np.array([_numbers(signal, "--signal")])
    else:
        data = _small_input(image_spec)
    try:  # plain weights '5,6,7' (fractions too: '1/3,1/3,1/3') are a one-row kernel
        kernel = Kernel([_numbers(kernel_spec, "--kernel")], name=kernel_spec)
    except UsageError:
        kernel = load_kernel(kernel_spec)
    if data.size > 1600:
        raise UsageError(
            f"input of {data.shape[0]}x{data.shape[1]} is too large to explain "
            "(at most 40x40 values)"
        )
    result = run_explain(data, kernel, op=op, mode=mode)
    small = result.matrix.shape[1] <= 24 and result.matrix.shape[0] <= 64
    console.show_explanation(result, sliding=result.output.size <= 64, show_matrix=small)
    if save_matrix is not None:
        write_matrix(result.matrix, save_matrix)
    if not result.agrees:
        sys.exit(1)


def _small_input(spec: str):
    import os

    import numpy as np

    from .kernel_io import load_kernel

    if os.path.isfile(spec) and not spec.lower().endswith((".txt", ".csv", ".mat", ".npy")):
        from .image_io import read_image

        img = read_image(spec)
        if img.channels != 1:
            pixels = img.pixels[..., : min(3, img.channels)].mean(axis=2)
        else:
            pixels = img.pixels[..., 0]
        return np.asarray(pixels, dtype=np.float64)
    return np.array(load_kernel(spec).weights)


@main.command()
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(["auto", "direct", "fft"]),
    help="Backend(s) to probe (default: all).",
)
@debug_option
@handle_errors
def probe(backends: tuple[str, ...]) -> None:
    """Impulse test: which operation reproduces the kernel as-is (convolution)?

    Filters a single bright pixel with asymmetric kernels (odd, and even with an
    explicit origin) on every backend and both operations. Convolution must
    reproduce the kernel as written, correlation the kernel rotated by 180
    degrees; exit code 1 if anything disagrees.

    \b
    Example:
      convcli probe
    """
    from . import console
    from .algebra import probe as run_probe

    rows = run_probe(backends or ("direct", "fft", "auto"))
    console.show_table(
        "impulse response",
        ["backend", "operation", "reproduces", "expected", "max |error|", "ok"],
        [
            (
                r.backend,
                r.op,
                r.reproduces,
                r.expected,
                f"{r.max_abs_error:.2g}",
                "yes" if r.ok else "NO",
            )
            for r in rows
        ],
    )
    if not all(r.ok for r in rows):
        click.echo("Error: an operation does not match its definition", err=True)
        sys.exit(1)


@main.command()
@click.argument("input_dir", metavar="INPUT_DIR", type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (created; must not be INPUT_DIR or inside it).",
)
@click.option(
    "-k",
    "--kernel",
    "kernel_specs",
    multiple=True,
    required=True,
    metavar="KERNEL",
    help="Kernel(s) to apply in sequence, as for apply.",
)
@click.option(
    "--op", type=click.Choice(["convolve", "correlate"]), default="convolve", show_default=True
)
@click.option("--normalize", is_flag=True, help="Divide each kernel by its sum.")
@filter_settings
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders (mirrored).")
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="Only files matching GLOB (name or relative path); repeatable.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "jpeg", "tiff", "webp", "bmp"]),
    default=None,
    help="Convert outputs to this format (default: keep each input's).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 256),
    default=None,
    help="Parallel worker processes (default: the number of cores).",
)
@click.option("--skip-existing", is_flag=True, help="Keep outputs that exist (resume a batch).")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a JSON report of every file, the options and library versions.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local processes, or a Dask cluster (convcli[dask]).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@debug_option
@handle_errors
def batch(
    input_dir: str,
    output_dir: str,
    kernel_specs: tuple[str, ...],
    op: str,
    normalize: bool,
    backend: str,
    mode: str,
    cval: float,
    range_policy: str | None,
    depth: str | None,
    precision: str,
    alpha_mode: str,
    nan_policy: str,
    quality: int | None,
    compress_level: int | None,
    max_pixels: int | None,
    recursive: bool,
    patterns: tuple[str, ...],
    fmt: str | None,
    jobs: int | None,
    skip_existing: bool,
    overwrite: bool,
    report_path: str | None,
    executor: str,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Filter every image in INPUT_DIR into OUTPUT_DIR, safely and in parallel.

    The folder structure is mirrored and file stems kept. Nothing is lost: inputs
    are never modified, every output is written atomically, existing outputs are
    refused unless --skip-existing or --overwrite, and an interrupted batch
    (Ctrl-C) leaves only complete files: rerun with --skip-existing to finish it.
    One bad image does not stop the batch; the exit code is then 1.

    \b
    Examples:
      convcli batch photos/ -o blurred/ -k gaussian:sigma=2 --recursive
      convcli batch scans/ -o sharp/ -k sharpen --format png --jobs 2 --report run.json
      convcli batch /shared/in -o /shared/out -k box:size=5 --executor dask \\
          --scheduler tcp://scheduler:8786
    """
    import json

    from . import console
    from .backends.borders import normalize_mode
    from .backends.direct import available_cores
    from .batch import JobSettings, check_existing, plan_batch, run_batch, run_report
    from .errors import UsageError
    from .kernel_io import load_kernel
    from .process import FilterOptions, prepare_kernels

    if skip_existing and overwrite:
        raise UsageError("give --skip-existing or --overwrite, not both")
    if scheduler and executor != "dask":
        raise UsageError("--scheduler goes with --executor dask")
    if range_policy == "none" and depth in ("8", "16"):
        raise UsageError("range policy 'none' is only for float output (--depth float)")
    kernels = prepare_kernels([load_kernel(s) for s in kernel_specs], normalize)
    options = FilterOptions(
        op=op,
        backend=backend,
        mode=normalize_mode(mode),
        cval=cval,
        normalize=False,  # the kernels are normalized once, here
        range_policy=range_policy,
        dtype=precision,
        alpha=alpha_mode,
        depth=depth,
        nonfinite=nan_policy,
    )
    settings = JobSettings(
        tuple(kernels),
        options,
        quality=quality,
        compress_level=compress_level,
        max_pixels=max_pixels,
    )
    plan = plan_batch(input_dir, output_dir, recursive=recursive, patterns=patterns, fmt=fmt)
    check_existing(plan, skip_existing=skip_existing, overwrite=overwrite)
    if report_path is not None:
        _check_report_path(report_path, plan.input_dir)
    try:  # the output folder now: a path that cannot be a folder fails once, not per image
        os.makedirs(plan.output_dir, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{output_dir}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    _warn_about_cval(options.mode, cval, "8- and 16-bit images")
    workers = jobs or available_cores()
    if not quiet:
        where = f"the cluster at {scheduler}" if scheduler else f"{workers} worker(s)"
        skipped = []
        if plan.excluded:
            skipped.append(f"{plan.excluded} image(s) matching no --pattern")
        if plan.other:
            skipped.append(f"{plan.other} hidden or special entries")
        console.info(
            f"{len(plan.jobs)} image(s) to filter, {plan.ignored} non-image file(s) ignored"
            + "".join(f", {text} left out" for text in skipped)
            + f"; {executor} executor, {where}"
        )
    if patterns and not plan.jobs and plan.excluded:
        console.warning(f"--pattern matched none of the {plan.excluded} image(s)")
    with console.BatchProgress(len(plan.jobs), quiet=quiet) as progress:
        summary = run_batch(
            plan,
            settings,
            jobs=workers,
            skip_existing=skip_existing,
            overwrite=overwrite,
            executor=executor,
            scheduler=scheduler,
            on_result=progress.update,
        )
    if report_path is not None:
        run = {
            "recursive": recursive,
            "patterns": list(patterns),
            "format": fmt,
            "normalize": normalize,
            "jobs": workers,
            "executor": executor,
            "scheduler": scheduler,
            "skip_existing": skip_existing,
            "overwrite": overwrite,
        }
        report = run_report(plan, settings, summary, sys.argv, run)
        _write_text_atomically(report_path, json.dumps(report, indent=2))
    console.show_batch_summary(summary, plan, errors_only=quiet)
    if summary.interrupted:
        sys.exit(130)
    if summary.count("failed"):
        sys.exit(1)


def _check_report_path(path: str, input_dir: str) -> None:
    """Refuse, before any work, a --report path that cannot be written or lies in the input."""
    from pathlib import Path

    from .batch import is_same_or_inside
    from .errors import UsageError

    target = Path(os.path.abspath(path))
    if not target.parent.is_dir():
        raise UsageError(f"{path}: report folder '{target.parent}' does not exist")
    if target.is_dir():
        raise UsageError(f"{path}: report path is a folder")
    if is_same_or_inside(target, Path(input_dir)):
        raise UsageError(f"{path}: the report would be written inside the input folder")


def _warn_about_cval(mode: str, cval: float, images: str) -> None:
    """Warn when a --cval looks like a 0..255 value (pixels are filtered on 0..1)."""
    from . import console

    if mode == "constant" and not 0.0 <= cval <= 1.0:
        console.warning(
            f"--cval {cval:g} is outside 0..1, the scale {images} are filtered on "
            "(0 black, 1 white); did you mean a fraction, e.g. 128 of 255 = 0.5?"
        )


def _write_text_atomically(path: str, text: str) -> None:
    from .atomic import write_atomically
    from .errors import ImageWriteError

    try:
        write_atomically(path, (text + "\n").encode())
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write report ({exc.strerror or exc})") from None


@main.group()
def kernels() -> None:
    """List the built-in kernels, show any kernel as a matrix with its properties,
    merge kernels, or write a kernel file.

    \b
    Examples:
      convcli kernels list
      convcli kernels show kernels/gaussian5x5_273.txt --png g273.png
      convcli kernels compose box:size=3 box:size=3 -o tent.txt
      convcli kernels export sobel:axis=y -o sobel_y.mat
    """


@kernels.command("list")
@debug_option
@handle_errors
def kernels_list() -> None:
    """List every built-in kernel with its parameters.

    \b
    Example:
      convcli kernels list
    """
    from . import console
    from .kernels import BUILTINS

    rows = []
    for name, spec in BUILTINS.items():
        params = ", ".join(p.describe() for p in spec.params) or "-"
        rows.append((name, params, spec.description))
    console.show_table(
        "Built-in kernels (NAME[:key=value,...])", ["name", "parameters", "description"], rows
    )


@kernels.command("show")
@click.argument("spec", metavar="KERNEL")
@click.option(
    "--png",
    "png_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also save the kernel as an enlarged, annotated picture.",
)
@debug_option
@handle_errors
def kernels_show(spec: str, png_path: str | None) -> None:
    """Show KERNEL as a heat-map table with its sum, symmetry, separability and origin.

    Positive weights are blue, negative red, deeper for larger magnitudes; the
    origin is in [brackets].

    \b
    Examples:
      convcli kernels show sobel:axis=x
      convcli kernels show kernels/gaussian5x5_273.txt --png k273.png
    """
    from . import console
    from .kernel_io import load_kernel

    k = load_kernel(spec)
    if png_path is not None:
        from .image_io import write_image
        from .panel import kernel_picture

        write_image(kernel_picture(k), png_path)
    facts = [
        ("name", k.name),
        ("shape", f"{k.shape[0]}x{k.shape[1]}"),
        ("origin", f"row {k.origin[0]}, col {k.origin[1]} (0-based; shown in [brackets])"),
        ("sum", console.format_number(k.sum)),
        ("symmetry", _symmetry_text(k)),
        ("rank", str(k.rank)),
    ]
    if k.factors is not None:
        col, row = k.factors
        facts.append(
            (
                "separable",
                "yes: column "
                + "["
                + " ".join(console.format_number(v) for v in col)
                + "] x row ["
                + " ".join(console.format_number(v) for v in row)
                + "]",
            )
        )
    else:
        facts.append(("separable", f"no (rank {k.rank})"))
    console.show_kernel(k.weights, k.origin, facts, title=k.name)


@kernels.command("export")
@click.argument("spec", metavar="KERNEL")
@click.option(
    "-o",
    "--output",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Kernel file to write.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["txt", "csv", "mat", "im", "npy"]),
    default=None,
    help="Format (default: from the extension).",
)
@debug_option
@handle_errors
def kernels_export(spec: str, out_path: str, fmt: str | None) -> None:
    """Write KERNEL (built-in or loaded from any format) to a kernel file.

    txt, csv and im keep the origin; libvips .mat and .npy cannot store one and
    are read back with the centre origin.

    \b
    Examples:
      convcli kernels export gaussian:sigma=1 -o g.txt
      convcli kernels export kernels/emboss.txt -o emboss.npy
    """
    from .kernel_io import load_kernel, save_kernel

    save_kernel(load_kernel(spec), out_path, fmt)


@kernels.command("compose")
@click.argument("specs", metavar="KERNEL...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    "out_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the composed kernel here (format by extension).",
)
@debug_option
@handle_errors
def kernels_compose(specs: tuple[str, ...], out_path: str | None) -> None:
    """Merge kernels applied in sequence into one (full convolution of the kernels).

    Convolution is associative, (I * A) * B == I * (A * B), so convolving with
    the composed kernel equals convolving with each in turn. The command proves
    it on a test image and shows that correlation does not compose this way.

    \b
    Examples:
      convcli kernels compose box:size=3 box:size=3 -o tent.txt
      convcli kernels compose gaussian:sigma=1 sobel:axis=x
    """
    from . import console
    from .algebra import check_composition, compose
    from .kernel_io import load_kernel, save_kernel

    ks = [load_kernel(s) for s in specs]
    composed = compose(ks)
    check = check_composition(ks, composed)
    if out_path is not None:
        save_kernel(composed, out_path)
    console.show_kernel(
        composed.weights,
        composed.origin,
        [
            ("shape", f"{composed.shape[0]}x{composed.shape[1]}"),
            ("origin", f"row {composed.origin[0]}, col {composed.origin[1]} (sum of the origins)"),
            ("sum", console.format_number(composed.sum)),
            ("symmetry", _symmetry_text(composed)),
        ],
        title=f"composed: {composed.name}",
    )
    h, w = check.image_shape
    status = "holds" if check.holds else "FAILS"
    console.info(
        f"check ({h}x{w} random image, wrap borders, float64): convolving with each kernel in "
        f"turn vs once with the composed kernel: max |diff| {check.max_abs_convolution:.3g} "
        f"(tolerance {check.tolerance:.2g}) - associativity {status}"
    )
    console.info(
        "correlation is not associative: merging the kernels by correlating them (A corr B) "
        "and correlating once differs from correlating in turn by up to "
        f"{check.max_abs_correlated_kernels:.3g}"
        + (
            _why_correlation_merged(ks)
            if check.max_abs_correlated_kernels <= check.tolerance
            else ""
        )
        + "; a chain of correlations equals one correlation with the *convolution* of the "
        f"kernels (max |diff| {check.max_abs_correlation:.3g}), since correlating is "
        "convolving with rotated kernels"
    )
    if not check.holds:
        sys.exit(1)


def _why_correlation_merged(ks: list[Any]) -> str:
    """Why merging by correlation happened to give no difference for these kernels."""
    if len(ks) == 1:
        return " (0 here: with one kernel there is nothing to merge)"
    if all(str(k.symmetry) == "symmetric" for k in ks[1:]):
        return (
            " (0 here because every kernel after the first is point-symmetric, so correlating "
            "with it equals convolving)"
        )
    return " (0 here for these particular kernels)"


def _symmetry_text(k: Any) -> str:
    value = str(k.symmetry)
    if value == "symmetric":
        return "symmetric (K == rot180 K): convolution == correlation"
    if value == "antisymmetric":
        return "antisymmetric (K == -rot180 K): convolution == -correlation"
    return "asymmetric: convolution and correlation differ"


def run() -> None:  # pragma: no cover - console entry for python -m
    main(prog_name="convcli")


if __name__ == "__main__":  # pragma: no cover
    run()
