"""``convcli kernels``: list, show, export and compose kernels."""

from __future__ import annotations

import sys
from typing import Any

import click

from .common import (
    debug_option,
    handle_errors,
)


@click.group()
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
    from .. import console
    from ..kernels import BUILTINS

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
    type=click.Path(),
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
    from .. import console
    from ..kernel_io import load_kernel

    k = load_kernel(spec)
    if png_path is not None:
        from ..image_io import write_image
        from ..panel import kernel_picture

        write_image(kernel_picture(k), png_path)
    facts = [
        ("name", k.name),
        ("shape", f"{k.shape[0]}x{k.shape[1]}"),
        ("origin", f"row {k.origin[0]}, col {k.origin[1]} (0-based; shown in [brackets])"),
        ("sum", console.format_number(k.sum)),
        ("symmetry", _symmetry_text(k)),
        ("rank", str(k.rank)),
    ]
    if k.offset:
        facts.append(("offset", f"{console.format_number(k.offset)} levels, added to every result"))
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
    type=click.Path(),
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
    from ..kernel_io import load_kernel, save_kernel

    save_kernel(load_kernel(spec), out_path, fmt)


@kernels.command("compose")
@click.argument("specs", metavar="KERNEL...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    "out_path",
    type=click.Path(),
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
    from .. import console
    from ..algebra import check_composition, compose
    from ..kernel_io import load_kernel, save_kernel

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
