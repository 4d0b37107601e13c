"""``convcli explain`` and ``convcli probe``: the mathematics, made checkable."""

from __future__ import annotations

import math
import os
import sys

import click

from .common import debug_option, handle_errors, peers_options


def _numbers(text: str, what: str) -> list[float]:
    """Finite numbers separated by commas or spaces; fractions like 1/3 allowed."""
    from ..errors import UsageError
    from ..kernel_io import parse_number

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


@click.command()
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
    type=click.Path(),
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

    from .. import console
    from ..algebra import check_matrix_path
    from ..algebra import explain as run_explain
    from ..algebra import save_matrix as write_matrix
    from ..errors import UsageError
    from ..kernel_io import load_kernel
    from ..kernels import Kernel

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

    import numpy as np

    from ..kernel_io import load_kernel

    if os.path.isfile(spec) and not spec.lower().endswith((".txt", ".csv", ".mat", ".npy")):
        from ..image_io import read_image

        img = read_image(spec)
        if img.channels != 1:
            pixels = img.pixels[..., : min(3, img.channels)].mean(axis=2)
        else:
            pixels = img.pixels[..., 0]
        return np.asarray(pixels, dtype=np.float64)
    return np.array(load_kernel(spec).weights)


@click.command()
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(["auto", "direct", "fft"]),
    help="Backend(s) to probe (default: all).",
)
@peers_options
@debug_option
@handle_errors
def probe(backends: tuple[str, ...], peers: bool, as_json: bool, markdown: bool) -> None:
    """Impulse test: which operation reproduces the kernel as-is (convolution)?

    Filters a single bright pixel with asymmetric kernels (odd, and even with an
    explicit origin) on every backend and both operations. Convolution must
    reproduce the kernel as written, correlation the kernel rotated by 180
    degrees; exit code 1 if anything disagrees.

    With --peers: what the other libraries installed compute instead (see
    'convcli identify').

    \b
    Examples:
      convcli probe
      convcli probe --peers
    """
    from .. import console
    from ..algebra import probe as run_probe
    from ..errors import UsageError

    if peers:
        from .identify_cmds import probe_peers

        return probe_peers(as_json, markdown)
    if as_json or markdown:
        raise UsageError("--json and --markdown go with --peers")

    from .. import native

    console.info(native.NOTE)
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
