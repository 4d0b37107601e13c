"""The filtering commands: apply, blur, sharpen, edge, and batch (folders)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .common import (
    _check_report_path,
    _same_file,
    _warn_about_cval,
    _write_text_atomically,
    complete_kernel,
    debug_option,
    filter_options,
    filter_settings,
    handle_errors,
)


def _resolve_output(input_path: str, output: str | None, in_place: bool) -> str:
    from ..errors import UsageError

    if in_place:
        if input_path == "-":
            raise UsageError("--in-place needs an input file, not stdin")
        if output is not None and not _same_file(input_path, output):
            raise UsageError("give either -o/--output or --in-place, not both")
        return input_path
    if output is None:
        raise UsageError("missing -o/--output (or --in-place to overwrite the input)")
    if input_path != "-" and output != "-" and _same_file(input_path, output):
        from ..errors import PathError

        raise PathError(
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
    from .. import console
    from ..backends.borders import normalize_mode
    from ..pipeline.files import filter_file
    from ..process import FilterOptions

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


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
@click.option(
    "-k",
    "--kernel",
    "kernel_specs",
    multiple=True,
    required=True,
    metavar="KERNEL",
    help="Built-in (NAME[:key=value,...]), kernel file (.txt .csv .mat .im .npy) or "
    "ImageMagick string ('3x3: 0,1,0 1,-4,1 0,1,0'). Repeat to apply in sequence.",
    shell_complete=complete_kernel,
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
    from ..kernel_io import load_kernel

    kernels = [load_kernel(spec) for spec in kernel_specs]
    _run_filter(input_path, kernels, op=op, normalize=normalize, **opts)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
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
    from ..errors import UsageError
    from ..kernels import builtin_kernel

    given = click.get_current_context().get_parameter_source("sigma")
    if box_size is not None and given is not click.core.ParameterSource.DEFAULT:
        raise UsageError("give --sigma (Gaussian) or --box (box filter), not both")
    kernel = (
        builtin_kernel("box", size=box_size)
        if box_size is not None
        else builtin_kernel("gaussian", sigma=sigma)
    )
    _run_filter(input_path, [kernel], op="convolve", **opts)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
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
    from ..kernels import builtin_kernel

    kernel = (
        builtin_kernel("sharpen", amount=amount)
        if sigma is None
        else builtin_kernel("unsharp", sigma=sigma, amount=amount)
    )
    _run_filter(input_path, [kernel], op="convolve", **opts)


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
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


@click.command()
@click.argument("input_dir", metavar="INPUT_DIR", type=click.Path())
@click.option(
    "-o",
    "--output",
    "output_dir",
    required=True,
    type=click.Path(),
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
    shell_complete=complete_kernel,
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
    type=click.Path(),
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

    from .. import console
    from ..backends.borders import normalize_mode
    from ..backends.direct import available_cores
    from ..batch import JobSettings, check_existing, plan_batch, run_batch, run_report
    from ..errors import UsageError
    from ..kernel_io import load_kernel
    from ..process import FilterOptions, prepare_kernels

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
        from ..errors import PathError

        raise PathError(
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
