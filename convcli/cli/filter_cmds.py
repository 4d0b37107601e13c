"""The filtering commands: apply, blur, sharpen, edge (one file, several files, or folders)
and batch (a folder).

One input and an output file: filtered and written as it is (replacing the output, as cp
does).  Several inputs, a folder, or an output folder (``-o DIR/``): every image runs on
batch's engine (:mod:`convcli.batch`): in parallel worker processes, written atomically,
with progress, a summary, ``--report``, and batch's safety rules (existing outputs are kept
unless ``--skip-existing`` or ``--overwrite``; nothing is ever written inside an input
folder or over an input).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .common import (
    MANY_FILES_DEFAULTS,
    _check_report_path,
    _same_file,
    _warn_about_cval,
    _write_text_atomically,
    filter_options,
    handle_errors,
    kernel_options,
)


class EdgeGain(click.ParamType):
    """``auto``, or a number > 0."""

    name = "gain"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        import math

        if isinstance(value, float) or str(value).strip().lower() == "auto":
            return value if isinstance(value, float) else "auto"
        try:
            number = float(value)
        except ValueError:
            self.fail(f"'{value}' is not 'auto' or a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"'{value}' must be > 0", param, ctx)
        return number


INPUTS = click.argument(
    "inputs", metavar="INPUT...", nargs=-1, required=True, type=click.Path(allow_dash=True)
)


_AHEAD = "convcli.read_ahead"


def read_ahead(fn: Any) -> Any:
    """Start decoding a command's one JPEG input (:func:`convcli.jpeg_codec.prefetch`) as
    the command starts, before its kernels are built and the engine is imported, so that
    the decoding overlaps that work; :func:`_run_filter` takes it up.  Only for one input
    file to one output file without ``--verify`` (which reads the input itself).  The
    ``convcli`` command may have started it already (:func:`convcli.__main__.early_input`):
    then that one is used."""
    import functools

    @functools.wraps(fn)
    def wrapper(inputs: tuple[str, ...], **kwargs: Any) -> Any:
        from ..jpeg_codec import prefetch, take_early

        one = len(inputs) == 1 and inputs[0] != "-" and not kwargs.get("verify")
        # (the decoding may have started before click was even loaded: convcli.__main__)
        early = take_early(inputs[0] if one else None, kwargs.get("max_pixels"))
        if one and not _is_many(inputs, kwargs.get("output")):
            ahead = early or prefetch(inputs[0], kwargs.get("max_pixels"))
            if ahead is not None:
                click.get_current_context().meta[_AHEAD] = ahead
        return fn(inputs, **kwargs)

    return wrapper


def _is_many(inputs: tuple[str, ...], output: str | None) -> bool:
    """Several inputs, a folder among them, or an output that names a folder."""
    if len(inputs) > 1 or any(i != "-" and os.path.isdir(i) for i in inputs):
        return True
    return output is not None and (output.endswith(("/", os.sep)) or os.path.isdir(output))


def _check_output_folder_name(inputs: tuple[str, ...], output: str) -> None:
    """Refuse an output folder that is not there yet but is named like an image file: the
    user most likely meant one output file (``-o all.png`` for a folder of inputs)."""
    from ..errors import PathError, UsageError

    image_ext = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")
    if os.path.exists(output) or output.endswith(("/", os.sep)):
        return
    if output.lower().endswith(image_ext):
        why = (
            "several inputs are written into a folder"
            if len(inputs) > 1
            else f"'{inputs[0]}' is a folder, whose images are written into a folder"
        )
        error = UsageError if len(inputs) > 1 else PathError
        raise error(
            f"-o '{output}' is named like an image file, but {why}; end it with / "
            f"('{output}/') if you mean a folder of that name"
        )


def _filter_settings(opts: dict[str, Any], *, op: str, normalize: bool) -> Any:
    """Take the filtering settings out of a command's options: one FilterOptions."""
    from ..backends.borders import normalize_mode
    from ..process import FilterOptions

    return FilterOptions(
        op=op,
        backend=opts.pop("backend"),
        mode=normalize_mode(opts.pop("mode")),
        cval=opts.pop("cval"),
        normalize=normalize,
        range_policy=opts.pop("range_policy"),
        dtype=opts.pop("precision"),
        alpha=opts.pop("alpha_mode"),
        depth=opts.pop("depth"),
        nonfinite=opts.pop("nan_policy"),
        bias=opts.pop("bias"),
        background=opts.pop("background"),
    )


def _filter_command(
    inputs: tuple[str, ...],
    kernels_or_edge: Any,
    *,
    op: str,
    folder_only: bool = False,
    normalize: bool = False,
    edge_gain: Any = "auto",
    **opts: Any,
) -> None:
    """Run a filtering command on one file, or on batch's engine for several."""
    from dataclasses import replace

    from ..errors import UsageError

    options = replace(_filter_settings(opts, op=op, normalize=normalize), edge_gain=edge_gain)
    many = {k: opts.pop(k) for k in MANY_FILES_DEFAULTS}
    if folder_only or _is_many(inputs, opts["output"]):
        if opts.pop("in_place"):
            raise UsageError("--in-place takes one input file (and no -o)")
        if "-" in inputs:
            raise UsageError("standard input ('-') takes one input and an output file")
        out = opts["output"]
        if out is None:
            raise UsageError("several inputs or a folder need -o/--output DIR")
        _check_output_folder_name(inputs, out)
        opts.pop("verbose")
        if opts.pop("as_json"):
            raise UsageError("--json reports one file; for several inputs use --report FILE")
        _run_many(inputs, kernels_or_edge, options, **opts, **many)
        return
    given = [f"--{k.replace('_', '-')}" for k, v in many.items() if v != MANY_FILES_DEFAULTS[k]]
    if given:
        names = {"--patterns": "--pattern", "--report-path": "--report"}
        shown = ", ".join(names.get(g, g) for g in given)
        raise UsageError(
            f"{shown}: for several inputs or a folder (one file goes to an output file; "
            "end -o with / to write it into a folder)"
        )
    _run_filter(inputs[0], kernels_or_edge, options, **opts)


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
    options: Any,
    *,
    output: str | None,
    in_place: bool,
    fmt: str | None,
    quality: int | None,
    compress_level: int | None,
    tiff_compression: str | None,
    max_pixels: int | None,
    verbose: bool,
    verify: bool = False,
    as_json: bool = False,
) -> None:
    # a JPEG input has been decoding since the command started (read_ahead); read_samples
    # uses it only for the file it was made from
    ahead = click.get_current_context().meta.pop(_AHEAD, None)
    from .. import console
    from ..errors import UsageError
    from ..pipeline.files import filter_file

    dest = _resolve_output(input_path, output, in_place)
    op = options.op

    if as_json and dest == "-":
        raise UsageError("--json prints on stdout: write the image to a file, not '-'")
    check = None
    if verify:
        from .identify_cmds import verify_before_writing

        check = verify_before_writing(input_path, kernels_or_edge, options, max_pixels, verbose)

    def on_read(stored: Any) -> None:
        for note in stored.meta.notes:
            console.warning(f"{input_path}: {note}")
        if stored.depth != "float":
            _warn_about_cval(options.mode, options.cval, "pixels")

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
        tiff_compression=tiff_compression,
        max_pixels=max_pixels,
        on_read=on_read,
        prefetched=ahead,
    )
    report = result.filter
    if as_json:
        _print_json(input_path, dest, result, options, edge, check)
    if verbose:
        from .. import native

        if not native.AVAILABLE:
            console.info(native.NOTE)
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
        if edge is not None:
            console.info(_edge_gain_line(report))
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


def _print_json(
    input_path: str, dest: str, result: Any, options: Any, edge: Any, check: Any
) -> None:
    """``--json``: the run of one file, on stdout."""
    import json
    from dataclasses import asdict

    report = result.filter
    data = {
        "input": input_path,
        "output": dest,
        "width": result.width,
        "height": result.height,
        "bands": result.bands,
        "input_depth": result.depth,
        "output_depth": report.depth,
        "format": result.format,
        "edge": edge,
        "options": {k: v for k, v in asdict(options).items()},
        "steps": [
            {
                "kernel": s.kernel.name,
                "shape": list(s.kernel.shape),
                "origin": list(s.kernel.origin),
                "offset": s.kernel.offset,
                "backend": s.plan.backend,
                "method": s.plan.method,
                "reason": s.plan.reason,
                "seconds": s.seconds,
            }
            for s in report.steps
        ],
        "range": {
            "policy": report.range_policy,
            "value_min": report.value_min,
            "value_max": report.value_max,
            "out_of_range": report.out_of_range,
            "samples": report.samples,
        },
        "edge_gain": report.edge_gain if edge is not None else None,
        "verify": None if check is None else check.to_dict(),
        "seconds": {"read": result.read_s, "filter": result.filter_s, "write": result.write_s},
    }
    click.echo(json.dumps(data, indent=2))


def _edge_gain_line(report: Any) -> str:
    """The --verbose line on how an edge operator's magnitude was scaled."""
    gain = f"x{report.edge_gain:.3g}"
    if report.edge_level:
        return (
            f"edge gain {gain}: the magnitude's 99.5th percentile, {report.edge_level:.3g}, is "
            "shown as white (--gain 1: the raw magnitude)"
        )
    if report.edge_gain == 1.0:
        return "edge gain x1: the raw magnitude (a step from black to white gives white)"
    return f"edge gain {gain}, as given"


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


def _run_many(
    inputs: tuple[str, ...],
    kernels_or_edge: Any,
    options: Any,
    *,
    output: str,
    fmt: str | None,
    quality: int | None,
    compress_level: int | None,
    tiff_compression: str | None,
    max_pixels: int | None,
    recursive: bool,
    patterns: tuple[str, ...],
    jobs: int | None,
    skip_existing: bool,
    overwrite: bool,
    report_path: str | None,
    executor: str,
    scheduler: str | None,
    quiet: bool,
    verify: bool = False,
) -> None:
    """Several files and folders into the folder ``output``, on batch's engine."""
    import json
    from dataclasses import replace

    from .. import console
    from ..backends.direct import available_cores
    from ..batch import JobSettings, check_existing, plan_inputs, run_batch, run_report
    from ..errors import PathError, UsageError
    from ..pipeline.job import is_tiff_output
    from ..process import prepare_kernels

    if skip_existing and overwrite:
        raise UsageError("give --skip-existing or --overwrite, not both")
    if scheduler and executor != "dask":
        raise UsageError("--scheduler goes with --executor dask")
    if options.range_policy == "none" and options.depth in ("8", "16"):
        raise UsageError("range policy 'none' is only for float output (--depth float)")
    edge = kernels_or_edge if isinstance(kernels_or_edge, str) else None
    normalize = options.normalize
    kernels = () if edge else tuple(prepare_kernels(list(kernels_or_edge), normalize))
    options = replace(options, normalize=False)  # the kernels are normalized once, here
    settings = JobSettings(
        kernels,
        options,
        edge=edge,
        quality=quality,
        compress_level=compress_level,
        tiff_compression=tiff_compression,
        max_pixels=max_pixels,
        verify=verify,
    )
    if tiff_compression is not None and fmt not in (None, "tiff"):
        raise UsageError(f"--tiff-compression is for TIFF output, and --format is {fmt}")
    plan = plan_inputs(list(inputs), output, recursive=recursive, patterns=patterns, fmt=fmt)
    outputs = [job.output for job in plan.jobs + plan.existing]
    if tiff_compression is not None and outputs and not any(map(is_tiff_output, outputs)):
        raise UsageError(
            "--tiff-compression is for TIFF output, and none of the outputs is a TIFF "
            "(--format tiff makes them so)"
        )
    check_existing(plan, skip_existing=skip_existing, overwrite=overwrite)
    if report_path is not None:
        _check_report_path(report_path, plan.inputs)
    try:  # the output folder now: a path that cannot be a folder fails once, not per image
        os.makedirs(plan.output_dir, exist_ok=True)
    except OSError as exc:
        raise PathError(
            f"{output}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    _warn_about_cval(options.mode, options.cval, "8- and 16-bit images")
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


@click.command()
@INPUTS
@kernel_options
@filter_options
@handle_errors
@read_ahead
def apply(inputs: tuple[str, ...], kernel_specs: tuple[str, ...], op: str, **opts: Any) -> None:
    """Filter each INPUT with one or more kernels and write the result.

    One INPUT goes to the output file -o (replaced if it exists). Several inputs, folders
    or -o DIR/ write into that folder, in parallel, as batch does.

    \b
    Examples:
      convcli apply photo.jpg -k gaussian:sigma=2 -o blurred.png
      convcli apply photo.jpg -k kernels/emboss.txt --op correlate -o emboss.png
      convcli apply scan.tif -k "3x3: 0,-1,0 -1,5,-1 0,-1,0" -o sharp.tif --verbose
      convcli apply *.png -k sobel:axis=x --range offset -o gx/
    """
    from ..kernel_io import load_kernel

    kernels = [load_kernel(spec) for spec in kernel_specs]
    _filter_command(inputs, kernels, op=op, **opts)


@click.command()
@INPUTS
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
@read_ahead
def blur(inputs: tuple[str, ...], sigma: float, box_size: int | None, **opts: Any) -> None:
    """Blur each INPUT with a Gaussian (or a box) filter.

    \b
    Examples:
      convcli blur photo.jpg -o soft.jpg --sigma 3
      convcli blur photo.jpg -o mean.png --box 5
      convcli blur *.jpg -o blurred/ --sigma 2
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
    _filter_command(inputs, [kernel], op="convolve", **opts)


@click.command()
@INPUTS
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
@read_ahead
def sharpen(inputs: tuple[str, ...], amount: float, sigma: float | None, **opts: Any) -> None:
    """Sharpen each INPUT (3x3 sharpen kernel, or an unsharp mask with --sigma).

    \b
    Examples:
      convcli sharpen photo.jpg -o crisp.jpg
      convcli sharpen photo.jpg -o crisp.jpg --sigma 2 --amount 0.8
      convcli sharpen scans/ -o sharp/ --recursive
    """
    from ..kernels import builtin_kernel

    kernel = (
        builtin_kernel("sharpen", amount=amount)
        if sigma is None
        else builtin_kernel("unsharp", sigma=sigma, amount=amount)
    )
    _filter_command(inputs, [kernel], op="convolve", **opts)


@click.command()
@INPUTS
@click.option(
    "--operator",
    type=click.Choice(["sobel", "prewitt", "scharr", "laplacian", "log"]),
    default="sobel",
    show_default=True,
    help="sobel/prewitt/scharr: gradient magnitude; laplacian/log: |response|.",
)
@click.option(
    "--sigma",
    type=float,
    default=None,
    help="The Gaussian's sigma of --operator log (default 1.4).",
)
@click.option(
    "--gain",
    type=EdgeGain(),
    default="auto",
    show_default=True,
    metavar="auto|G",
    help="auto: the magnitude times the gain that makes its 99.5th percentile white (x1 to "
    "x256; --verbose says which), so edges show on any photo; G: times G (1: the raw "
    "magnitude, a step from black to white giving white). A --range turns auto off.",
)
@filter_options
@handle_errors
@read_ahead
def edge(
    inputs: tuple[str, ...], operator: str, sigma: float | None, gain: Any, **opts: Any
) -> None:
    """Detect edges in each INPUT: gradient magnitude or |Laplacian|.

    \b
    Examples:
      convcli edge photo.jpg -o edges.png
      convcli edge photo.jpg -o edges.png --operator laplacian
      convcli edge photos/ -o edges/ --format png
      convcli edge photo.jpg -o blobs.png --operator log --sigma 3
    """
    from ..errors import UsageError

    if sigma is not None:
        if operator != "log":
            raise UsageError("--sigma goes with --operator log")
        operator = f"log:sigma={sigma!r}"
    _filter_command(inputs, operator, op="convolve", edge_gain=gain, **opts)


@click.command()
@INPUTS
@kernel_options
@filter_options
@handle_errors
def batch(inputs: tuple[str, ...], kernel_specs: tuple[str, ...], op: str, **opts: Any) -> None:
    """Filter every image in the INPUT folders and files into the folder -o, safely and in
    parallel.

    The same as `convcli apply INPUT... -k ... -o OUTPUT_DIR/`; blur, sharpen and edge
    take folders and many files the same way. The folder structure is mirrored
    (--recursive) and file stems kept. Nothing is lost: inputs are never modified, every
    output is written atomically, existing outputs are refused unless --skip-existing or
    --overwrite, and an interrupted batch (Ctrl-C) leaves only complete files: rerun with
    --skip-existing to finish it. One bad image does not stop the batch; the exit code is
    then 1.

    \b
    Examples:
      convcli batch photos/ -o blurred/ -k gaussian:sigma=2 --recursive
      convcli batch scans/ -o sharp/ -k sharpen --format png --jobs 2 --report run.json
      convcli batch /shared/in -o /shared/out -k box:size=5 --executor dask \\
          --scheduler tcp://scheduler:8786
    """
    from ..kernel_io import load_kernel

    kernels = [load_kernel(spec) for spec in kernel_specs]
    _filter_command(inputs, kernels, op=op, folder_only=True, **opts)
