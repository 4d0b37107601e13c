"""The command line of "what does a tool compute": ``convcli identify``, ``probe --peers`` and
``--verify``.  Options and printing only; the work is in :mod:`convcli.identify`,
:mod:`convcli.peers` and :mod:`convcli.verify`.

Its options (``--verify``, ``probe --peers``) are defined in :mod:`.common` with the others;
:mod:`convcli.cli` hands its error handling to :func:`add_commands`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .common import MAX_PIXELS_OPTION, SINGLE_KERNEL_OPTION

F = TypeVar("F", bound=Callable[..., Any])

_OPERATIONS = ("convolve", "correlate", "convolve-x", "convolve-y")


def verify_before_writing(
    input_path: str,
    kernels_or_edge: Any,
    options: Any,
    max_pixels: int | None,
    verbose: bool,
) -> Any:
    """Run ``--verify`` for one image and return its :class:`~convcli.verify.Verification`;
    raise :class:`~convcli.errors.FilterError` when the backends disagree (the caller then
    writes nothing)."""
    from .. import console
    from ..errors import FilterError, UsageError
    from ..verify import verify_file

    if input_path == "-":
        raise UsageError("--verify needs an input file, not stdin (it reads the image twice)")
    edge = kernels_or_edge if isinstance(kernels_or_edge, str) else None
    result = verify_file(
        input_path,
        None if edge else kernels_or_edge,
        options,
        edge=edge,
        max_pixels=max_pixels,
    )
    if not result.ok:
        raise FilterError(f"{input_path}: {result.describe()}; nothing written")
    if verbose:
        console.info(result.describe())
    return result


def probe_peers(as_json: bool, markdown: bool) -> None:
    """The body of ``convcli probe --peers``."""
    from .. import console
    from ..peers import COLUMNS, EVEN_KERNEL, IMPULSE_LEVEL, ODD_KERNEL, markdown_table
    from ..peers import probe_peers as run

    results = run()
    if as_json:
        import json

        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    if markdown:
        click.echo(markdown_table(results))
        return
    console.show_table(
        f"What each library computes (an impulse of {IMPULSE_LEVEL} filtered with "
        f"{ODD_KERNEL.name} and {EVEN_KERNEL.name}; identified by convcli identify)",
        list(COLUMNS),
        [r.row() for r in results],
    )


def _also(values: list[Any], found: Any, fmt: Callable[[Any], str] = str) -> str:
    others = [fmt(v) for v in values if v != found]
    return f" (equally good: {', '.join(others)})" if others else ""


def _fit_row(label: str, region: str, fit: Any) -> list[str]:
    if fit.pixels == 0:
        return [label, region, "0", "-", "-", "-", "-"]
    return [
        label,
        region,
        f"{fit.pixels:,}",
        f"{fit.max_diff:g}",
        f"{fit.mean_diff:.4g}",
        f"{fit.within_1:.2%}",
        f"{fit.exact:.2%}",
    ]


def show_identification(found: Any, input_path: str, output_path: str) -> None:
    """The ``identify`` report as tables on stdout."""
    from .. import console
    from ..identify import OPERATION_TEXT, border_band

    k = found.kernel
    c = found.best.candidate
    default = (k.shape[0] // 2, k.shape[1] // 2)
    eq = found.equivalent
    verdict = {
        "exact": "EXACT: every pixel is explained",
        "fits": "FITS: at least 99% of the pixels, interior and border alike, within 1 level",
        "no fit": "NO FIT: nothing convcli computes explains the output; the closest is shown",
    }[found.verdict]
    click.echo(
        f"{output_path} from {input_path} with {k.name} ({k.shape[0]}x{k.shape[1]}), output "
        f"{found.depth}{'-bit' if found.depth != 'float' else ''}: {verdict}"
    )
    origin = f"{c.origin}" + (" (convcli's default)" if c.origin == default else "")
    border = f"constant, cval {c.cval:.4g}" if c.boundary == "constant" else c.boundary
    rows = [
        ("operation", OPERATION_TEXT[c.operation] + _also(eq["operation"], c.operation)),
        ("origin", origin + _also(eq["origin"], c.origin)),
        ("boundary", border + _also(eq["boundary"], c.boundary)),
        ("kernel", ("divided by its sum" if c.normalized else "as given")
         + _also(eq["normalized"], c.normalized, lambda v: "normalized" if v else "as given")),
        ("range", c.range + _also(eq["range"], c.range)),
        ("rounding", c.rounding + _also(eq["rounding"], c.rounding)),
    ]  # fmt: skip
    title = "closest match" if found.verdict == "no fit" else "best match"
    console.show_table(title, ["", "found"], rows)
    band = border_band(k)
    fits = [
        _fit_row("best", "interior", found.best.interior),
        _fit_row("best", f"border band ({band} px)", found.best.border),
    ]
    if found.runner_up is not None:
        fits += [
            _fit_row("runner-up", "interior", found.runner_up.interior),
            _fit_row("runner-up", f"border band ({band} px)", found.runner_up.border),
        ]
    console.show_table(
        "difference from the output, in output levels",
        ["candidate", "region", "pixels", "max", "mean", "within 1 level", "exact"],
        fits,
    )
    if found.runner_up is not None:
        click.echo(
            f"runner-up (on the sampled rows): {found.runner_up.candidate.describe(k)}; "
            "differs in " + ", ".join(found.to_dict()["runner_up_differs_in"])
        )
    click.echo(
        "best of each operation on the sampled rows (mean level difference): "
        + ", ".join(f"{op} {v:.4g}" for op, v in found.per_operation.items())
        + f"; {found.candidates:,} variants scored on {found.sampled_rows} rows in "
        f"{found.seconds:.2f} s"
    )
    for note in found.notes:
        click.echo(f"note: {note}")


def add_commands(
    main: click.Group,
    *,
    handle_errors: Callable[[F], F],
    debug_option: Callable[[F], F],
) -> None:
    """Register ``identify`` on ``main`` with the CLI's error handling."""

    @main.command()
    @click.argument("input_path", metavar="INPUT", type=click.Path())
    @click.argument("output_path", metavar="OUTPUT", type=click.Path())
    @SINGLE_KERNEL_OPTION
    @click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
    @click.option(
        "--expect",
        type=click.Choice(_OPERATIONS),
        default=None,
        help="Exit 0 when the output fits and this operation explains it best, 1 when not.",
    )
    @MAX_PIXELS_OPTION
    @debug_option
    @handle_errors
    def identify(
        input_path: str,
        output_path: str,
        kernel_spec: str,
        as_json: bool,
        expect: str | None,
        max_pixels: int | None,
    ) -> None:
        """Find what another tool computed: OUTPUT is what it made from INPUT with KERNEL.

        Tries convolution, correlation and the one-axis flips, every origin inside the
        kernel, every boundary mode (and the value outside for constant), the kernel as
        given or normalized, clip/abs/offset of signed results, and rounding to nearest or
        truncation; reports the best match, how well it explains the output in the interior
        and in the border band (max and mean level difference, share within 1 level), and
        the runner-up. Variants are scored on a sample of rows first; the winner is
        confirmed on the whole image.

        \b
        Examples:
          convert in.png -convolve "1,2,3,4,5,6,7,8,9" im.png
          convcli identify in.png im.png -k "3x3: 1,2,3 4,5,6 7,8,9"
          convcli identify in.png cv.png -k kernels/emboss.txt --json --expect correlate
        """
        from ..identify import identify_files

        found = identify_files(input_path, output_path, kernel_spec, max_pixels=max_pixels)
        if as_json:
            import json

            click.echo(json.dumps(found.to_dict(), indent=2))
        else:
            show_identification(found, input_path, output_path)
        if expect is not None and not found.matches(expect):
            if not found.best.fits:
                why = "nothing fits"
            else:
                why = "it is best explained by " + " or ".join(found.equivalent["operation"])
            click.echo(f"Error: expected {expect}, but {why}", err=True)
            sys.exit(1)
