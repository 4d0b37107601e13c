"""``convcli compare``: convolution against correlation, with the proof."""

from __future__ import annotations

import sys

import click

from .common import (
    BOUNDARY_HELP,
    CVAL_HELP,
    _same_file,
    debug_option,
    handle_errors,
)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
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
    type=click.Path(),
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
    type=click.Path(),
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
) -> None:
    """Prove when convolution equals correlation: both, their difference, and a verdict.

    Computes conv = convolve(I, K), corr = correlate(I, K) and flip =
    correlate(I, rot180 K) with the same backend and boundary, prints the kernel,
    the differences and a verdict (EQUAL, NEGATED or DIFFERENT), and draws a panel
    input | convolution | correlation | |difference|. With alpha, colour is
    premultiplied by alpha before filtering (as apply does) and pixels are
    counted by what is visible (over black and over white).

    \b
    Examples:
      convcli compare sample_images/coffee.jpg -k emboss -o panel.png
      convcli compare photo.png -k sobel:axis=x --json --expect negated
    """
    import json
    from pathlib import Path

    from .. import console
    from ..backends.borders import normalize_mode
    from ..compare import compare as run_compare
    from ..compare import compare_samples, default_display_policy
    from ..errors import UsageError
    from ..image_io import read_image, read_samples, write_image
    from ..kernel_io import load_kernel
    from ..panel import PanelViews, panel_image, result_images

    if raw_results and save_results is None:
        raise UsageError("--raw-results goes with --save-results DIR")
    kernel = load_kernel(kernel_spec)
    boundary = normalize_mode(mode)
    policy = range_policy or default_display_policy(kernel)
    settings = dict(
        backend=backend, mode=boundary, cval=cval, dtype=precision, range_policy=policy,
        alpha=alpha_mode,
    )  # fmt: skip
    if panel_path is not None and input_path != "-" and _same_file(input_path, panel_path):
        raise UsageError(f"panel '{panel_path}' is the input file; refusing to overwrite it")
    image = None
    if save_results is None:  # strip by strip; a panel is drawn from views kept per strip
        with read_samples(input_path) as stored:
            for note in stored.meta.notes:
                console.warning(f"{input_path}: {note}")
            views = PanelViews(stored, policy, alpha_mode) if panel_path is not None else None
            result = compare_samples(stored, kernel, depth=stored.depth, visit=views, **settings)
        if views is not None:
            write_image(views.image(result), panel_path)
    else:  # the saved results need the three results whole
        image = read_image(input_path)
        for note in image.meta.notes:
            console.warning(f"{input_path}: {note}")
        result = run_compare(image.pixels, kernel, depth=image.depth, **settings)
        if panel_path is not None:
            write_image(panel_image(result, image.pixels, policy), panel_path)
    if save_results is not None:
        assert image is not None
        folder = Path(save_results)
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(input_path).stem if input_path != "-" else "stdin"
        for name, img in result_images(result, image, policy, raw=raw_results).items():
            ext = ".tif" if img.depth == "float" else ".png"
            write_image(img, folder / f"{stem}-{name}{ext}")
    report = result.to_dict()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        console.show_comparison(report, kernel.weights, kernel.origin)
    if expect is not None and result.verdict != expect:
        click.echo(f"Error: verdict is {result.verdict}, expected {expect}", err=True)
        sys.exit(1)
