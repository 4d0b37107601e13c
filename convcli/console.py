"""Terminal output for the CLI: the only module that imports rich.

Messages (info, warnings, errors) go to stderr; results (tables asked for)
go to stdout.  Colour follows rich's detection (NO_COLOR, not a terminal).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import one_line

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table


class _LazyConsole:
    """A rich Console made on first use: a command that prints nothing through rich (a plain
    ``convcli blur``) does not pay for importing it (about 16 ms at start-up)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def get(self) -> Any:
        """The rich Console itself."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def Table(*args: Any, **kwargs: Any) -> Table:  # noqa: N802 - rich's class, imported late
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


_err: Any = _LazyConsole(stderr=True, highlight=False)
_out: Any = _LazyConsole(highlight=False)


def info(message: str) -> None:
    """A message for ``--verbose`` runs, on stderr (one line: control characters escaped)."""
    _err.print(one_line(message), markup=False, soft_wrap=True)


def warning(message: str) -> None:
    """A warning on stderr (one line: control characters escaped)."""
    _err.print(f"Warning: {one_line(message)}", style="yellow", markup=False, soft_wrap=True)


def format_number(value: float) -> str:
    """Compact text for a weight: integers without decimals, others to 6 significant digits."""
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.6g}"


def _heat_style(value: float, top: float) -> str:
    """Background colour by sign (blue +, red -) and magnitude, black or white text."""
    if top == 0 or value == 0:
        return ""
    t = min(1.0, abs(value) / top)
    fade = int(235 - 175 * t)
    rgb = (fade, fade, 255) if value > 0 else (255, fade, fade)
    return f"black on rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def matrix_table(weights: np.ndarray, origin: tuple[int, int], title: str | None = None) -> Table:
    """The weights as a heat-map table (blue positive, red negative), origin in brackets."""
    from rich.text import Text

    table = Table(title=title, show_header=False, box=None, pad_edge=False, padding=(0, 1))
    for _ in range(weights.shape[1]):
        table.add_column(justify="right")
    top = float(np.abs(weights).max())
    for r, row in enumerate(weights):
        cells = []
        for c, value in enumerate(row):
            text = format_number(float(value))
            if (r, c) == origin:
                text = f"[{text}]"
            style = _heat_style(float(value), top) + (" bold" if (r, c) == origin else "")
            cells.append(Text(text, style=style.strip()))
        table.add_row(*cells)
    return table


def matrix_width(weights: np.ndarray) -> int:
    """Terminal columns :func:`matrix_table` needs (cells of equal width, one space apart)."""
    if weights.size == 0:
        return 0
    cell = max(len(format_number(float(v))) for v in weights.ravel()) + 2  # + origin brackets
    return weights.shape[1] * (cell + 1)


def print_matrix(
    weights: np.ndarray, origin: tuple[int, int], title: str, *, hint: str = ""
) -> None:
    """The matrix as a heat-map table on stdout when it fits the terminal, else one line saying
    so (a table cut to the width would print truncated numbers)."""
    need = matrix_width(weights)
    rows, cols = weights.shape
    if need <= _out.width and rows <= 64:
        _out.print(matrix_table(weights, origin, title=title))
        return
    message = (
        f"{title}: {rows}x{cols}, too large to print here (needs {need} columns, "
        f"the terminal has {_out.width})"
    )
    _out.print(message + (f"; {hint}" if hint else ""), markup=False, soft_wrap=True)


def show_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A titled table on stdout."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    _out.print(table)


def show_kernel(
    weights: np.ndarray, origin: tuple[int, int], facts: Sequence[tuple[str, str]], title: str
) -> None:
    """A kernel's matrix (when small enough to read) and its facts, on stdout."""
    print_matrix(
        weights, origin, title, hint="'convcli kernels show --png FILE' draws it at any size"
    )
    facts_table = Table(show_header=False, box=None, padding=(0, 2))
    facts_table.add_column(style="bold")
    facts_table.add_column()
    from rich.text import Text

    for key, value in facts:
        facts_table.add_row(key, Text(value))
    _out.print(facts_table)


def show_comparison(report: dict, weights: np.ndarray, origin: tuple[int, int]) -> None:
    """The ``convcli compare`` report: kernel, differences, verdict."""
    k = report["kernel"]
    show_kernel(
        weights,
        origin,
        [
            ("shape", f"{k['shape'][0]}x{k['shape'][1]}"),
            ("origin", f"row {k['origin'][0]}, col {k['origin'][1]}"),
            ("sum", format_number(k["sum"])),
            ("symmetry", k["symmetry"]),
            ("separable", "yes" if k["separable"] else "no"),
            ("backend", f"{report['backend']}, boundary {report['boundary']}"),
        ],
        title=k["name"],
    )
    table = Table(title="differences", title_justify="left")
    for col in ("", "max |diff|", "mean |diff|", "pixels differing", "PSNR dB"):
        table.add_column(col, justify="right")
    for label, key in (
        ("conv - corr", "conv_vs_corr"),
        ("conv - correlate(rot180 K)", "conv_vs_flipped_corr"),
    ):
        s = report[key]
        psnr = "inf" if s["psnr"] is None else f"{s['psnr']:.1f}"
        table.add_row(
            label,
            f"{s['max_abs']:.3g}",
            f"{s['mean_abs']:.3g}",
            f"{s['differing_pixels']} ({s['differing_percent']:.2f}%)",
            psnr,
        )
    _out.print(table)
    colour = {"equal": "green", "negated": "cyan", "different": "yellow"}[report["verdict"]]
    _out.print(report["explanation"], style=f"bold {colour}", markup=False, soft_wrap=True)
    _out.print(
        f"(conv - corr, computed with the difference kernel rot180 K - K, differs by rounding "
        f"only when below {report['tolerance']:.2g}: float arithmetic on the "
        f"{report.get('difference_backend') or report['backend']} backend; pixels are counted "
        "in the output "
        f"depth after the '{report['range_policy']}' range policy)",
        markup=False,
        soft_wrap=True,
    )


def show_explanation(e, sliding: bool, show_matrix: bool) -> None:
    """``convcli explain``: result, the sliding dot products, the matrix and the check."""
    out = e.output
    shape = "x".join(str(n) for n in out.shape)
    _out.print(
        f"{e.mode} {e.op} of a {e.input.shape[0]}x{e.input.shape[1]} input with the "
        f"{e.kernel.shape[0]}x{e.kernel.shape[1]} kernel {e.kernel.name} "
        f"(origin {e.kernel.origin}): output {shape}",
        markup=False,
        soft_wrap=True,
    )
    if out.shape[0] == 1:
        _out.print(
            "result: [" + ", ".join(format_number(v) for v in out.ravel()) + "]",
            markup=False,
            soft_wrap=True,
        )
    else:
        print_matrix(out, (-1, -1), "result", hint="a smaller input shows every value")
    if sliding:
        _out.print("sliding-window dot products (weight x input):", markup=False)
        for (y, x), pairs in e.windows:
            terms = " + ".join(f"{format_number(w)}*{format_number(v)}" for w, v in pairs) or "0"
            where = f"[{x}]" if out.shape[0] == 1 else f"[{y},{x}]"
            _out.print(
                f"  out{where} = {terms} = {format_number(float(out[y, x]))}",
                markup=False,
                soft_wrap=True,
            )
    m = e.matrix
    _out.print(f"M ({m.shape[0]}x{m.shape[1]}): vec(output) = M @ vec(input)", markup=False)
    if show_matrix:
        print_matrix(m, (-1, -1), "M", hint="--save-matrix writes it")
    else:
        _out.print(
            f"M is {m.shape[0]}x{m.shape[1]}, too large to print; --save-matrix writes it",
            markup=False,
        )
    kind = (
        "Toeplitz" if e.input.shape[0] == 1 and e.kernel.shape[0] == 1 else "doubly block Toeplitz"
    )
    taps = int(np.count_nonzero(e.kernel.weights))
    _out.print(
        f"M is {kind}: {e.zeros} of {m.size} entries are zero "
        f"({100 * e.zeros / m.size:.1f}%); every non-zero entry is one of the kernel's {taps} "
        f"non-zero taps, each tied along its own diagonal ({e.distinct_weights} distinct "
        "values)",
        markup=False,
        soft_wrap=True,
    )
    verdict = "equal" if e.agrees else "NOT equal"
    _out.print(
        f"check: M @ vec(input) and convcli's own {e.op} (zero borders) are {verdict} "
        f"(max |diff| {e.max_abs_difference:.3g}, tolerance {e.tolerance:.2g})",
        markup=False,
        soft_wrap=True,
    )


class BatchProgress:
    """Progress of a batch: a rich bar on a terminal, one line per file otherwise.

    ``quiet`` prints failures only.  Use as a context manager; call :meth:`update`
    with each job result.
    """

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self.total = total
        self.quiet = quiet
        self.done = 0
        self._progress = None
        self._task = None
        if not quiet and _err.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
                console=_err.get(),
            )

    def __enter__(self) -> BatchProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("filtering", total=self.total, rate="", current="")
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, result) -> None:
        self.done += 1
        name = result.input
        if not self.quiet:
            for note in getattr(result, "notes", ()):
                self._print(f"Warning: {name}: {note}", style="yellow")
        if self._progress is not None:
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            self._progress.update(
                self._task,
                advance=1,
                rate=f"{self.done / elapsed:.1f} img/s",
                current=f"last: {one_line(name)}",
            )
            if result.status == "failed":
                self._print(f"failed: {result.reason}", style="red")
            return
        if result.status == "failed":
            self._print(f"[{self.done}/{self.total}] failed {name}: {result.reason}")
        elif not self.quiet:
            self._print(f"[{self.done}/{self.total}] {result.status} {name} -> {result.output}")

    def _print(self, text: str, style: str | None = None) -> None:
        console = self._progress.console if self._progress is not None else _err
        console.print(one_line(text), style=style, markup=False, soft_wrap=True)


def show_batch_summary(summary, plan, *, errors_only: bool = False) -> None:
    """The end-of-batch table on stderr: counts, failures, wall time and rates.

    ``errors_only`` (``--quiet``): only the failures, one line each (and the
    interruption), no table.
    """
    failures = [r for r in summary.results if r.status == "failed"]
    if errors_only:
        for r in failures:
            _err.print(f"failed: {one_line(r.reason)}", markup=False, soft_wrap=True)
        if summary.interrupted:
            _err.print("interrupted: rerun with --skip-existing to finish", markup=False)
        return
    table = Table(title="batch summary", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    wall = max(summary.wall_s, 1e-9)
    processed = summary.count("processed")
    table.add_row("processed", str(processed))
    table.add_row("skipped", str(summary.count("skipped")))
    table.add_row("failed", str(len(failures)))
    table.add_row("not images (ignored)", str(plan.ignored))
    if plan.excluded:
        table.add_row("images matching no --pattern", str(plan.excluded))
    if plan.other:
        table.add_row("hidden or special entries", str(plan.other))
    table.add_row("wall time", f"{summary.wall_s:.2f} s")
    table.add_row("images/s", f"{processed / wall:.2f}")
    table.add_row("megapixels/s", f"{summary.megapixels / wall:.2f}")
    if summary.interrupted:
        table.add_row("interrupted", "yes: rerun with --skip-existing to finish")
    _err.print(table)
    for r in failures:
        _err.print(f"failed: {one_line(r.reason)}", markup=False, soft_wrap=True)
