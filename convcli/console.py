"""Terminal output for the CLI: the only module that imports rich.

Messages (info, warnings, errors) go to stderr; results (tables asked for)
go to stdout.  Colour follows rich's detection (NO_COLOR, not a terminal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


def info(message: str) -> None:
    """A message for ``--verbose`` runs, on stderr."""
    _err.print(message, markup=False, soft_wrap=True)


def warning(message: str) -> None:
    """A warning on stderr."""
    _err.print(f"Warning: {message}", style="yellow", markup=False, soft_wrap=True)


def format_number(value: float) -> str:
    """Compact text for a weight: integers without decimals, others to 6 significant digits."""
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.6g}"


def matrix_table(weights: np.ndarray, origin: tuple[int, int], title: str | None = None) -> Table:
    """The weights as a table, the origin in bold brackets."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False, padding=(0, 1))
    for _ in range(weights.shape[1]):
        table.add_column(justify="right")
    for r, row in enumerate(weights):
        cells = []
        for c, value in enumerate(row):
            text = format_number(float(value))
            cells.append(f"[bold]\\[{text}][/bold]" if (r, c) == origin else text)
        table.add_row(*cells)
    return table


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
    rows, cols = weights.shape
    if rows <= 25 and cols <= 25:
        _out.print(matrix_table(weights, origin, title=title))
    else:
        _out.print(f"{title}: {rows}x{cols} (too large to print the matrix)", markup=False)
    facts_table = Table(show_header=False, box=None, padding=(0, 2))
    facts_table.add_column(style="bold")
    facts_table.add_column()
    for key, value in facts:
        facts_table.add_row(key, value)
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
        f"(values differ by rounding only when below {report['tolerance']:.2g}: float "
        f"arithmetic on the {report['backend']} backend; pixels are counted in the output "
        f"depth after the '{report['range_policy']}' range policy)",
        markup=False,
        soft_wrap=True,
    )
