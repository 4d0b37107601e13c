"""``convcli compare``: convolution against correlation, with the proof."""

from __future__ import annotations

import sys

import click

from .common import (
    ALPHA_OPTION,
    BACKEND_OPTION,
    BOUNDARY_OPTION,
    CVAL_OPTION,
    MAX_PIXELS_OPTION,
    PRECISION_OPTION,
    SINGLE_KERNEL_OPTION,
    _same_file,
    debug_option,
    handle_errors,
)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
@SINGLE_KERNEL_OPTION
@click.option(
    "-o",
    "--output",
    "panel_path",
    type=click.Path(),
    default=None,
    help="Write the side-by-side panel image here (PNG recommended).",
)
@BACKEND_OPTION
@BOUNDARY_OPTION
@CVAL_OPTION
@ALPHA_OPTION
@click.option(
    "--range",
    "range_policy",
    type=click.Choice(["clip", "abs", "offset", "rescale"]),
    default=None,
    help="How signed results are shown and counted (default: offset for zero-sum "
    "kernels, else clip).",
)
@PRECISION_OPTION
@MAX_PIXELS_OPTION
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
    max_pixels: int | None,
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

    from .. import console
    from ..backends.borders import normalize_mode
    from ..compare import compare_samples, default_display_policy
    from ..errors import UsageError
    from ..image_io import read_samples, write_image
    from ..kernel_io import load_kernel
    from ..panel import PanelViews, ResultFiles

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
    if kernel.offset:  # a constant added to both results: it cancels in conv - corr
        console.warning(
            f"the kernel's offset ({kernel.offset:g} levels) is left out: compare shows the "
            "linear filter (the offset would be added to conv and corr alike)"
        )
        from ..kernels import Kernel

        kernel = Kernel(kernel.weights, origin=kernel.origin, name=kernel.name)
    boundary = normalize_mode(mode)
    policy = range_policy or default_display_policy(kernel)
    settings = dict(
        backend=backend, mode=boundary, cval=cval, dtype=precision, range_policy=policy,
        alpha=alpha_mode,
    )  # fmt: skip
    if panel_path is not None and input_path != "-" and _same_file(input_path, panel_path):
        from ..errors import PathError

        raise PathError(f"panel '{panel_path}' is the input file; refusing to overwrite it")
    with read_samples(input_path, max_pixels=max_pixels) as stored:  # strips; panel, results too
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
