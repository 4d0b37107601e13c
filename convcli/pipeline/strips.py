"""Cutting an image into strips with the halo a kernel chain needs (pure arithmetic).

A strip is a band of whole output rows ``[start, stop)``.  To compute it, the
pipeline filters a *window* of input rows around it and keeps the strip's rows:

* the halo: correlation with a kernel of ``kh`` rows and origin row ``o_r``
  reads ``o_r`` rows above each output row and ``kh - 1 - o_r`` below;
  convolution (correlation with the kernel rotated by 180 degrees) swaps
  them; kernels applied in turn add their halos, kernels applied side by side
  (a gradient's two derivatives) take the larger;
* inside the image the window extends by the halo, and the rows near the
  window's ends, which the backend extends by the boundary mode as if they were
  the image's edge, are computed but dropped;
* where the window reaches a true image edge it starts or stops there, so the
  backend applies the boundary rule exactly where the whole image would, and it
  reaches deeper into the image by the whole halo plus one row, so that every
  reflection at that edge (of the input, or of an intermediate result in a
  chain) reads rows that are themselves exact;
* ``wrap`` joins the top edge to the bottom: its window is the rows taken
  modulo the height (the periodic extension), so every stage of a chain is
  exact on it, and it never meets an edge.

So every strip height gives the whole-image result, bit for bit, on the direct
backend (``tests/test_pipeline.py`` checks heights 1, 2, the kernel's height
less one, a prime, kernels taller than the strip and than the image).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..kernels import Kernel


def kernel_reach(kernel: Kernel, op: str) -> tuple[int, int]:
    """Input rows ``(above, below)`` each output row reads for ``op`` with ``kernel``."""
    rows = kernel.shape[0]
    origin = kernel.origin[0]
    above, below = origin, rows - 1 - origin
    return (above, below) if op == "correlate" else (below, above)


def chain_reach(kernels: Iterable[Kernel], op: str) -> tuple[int, int]:
    """The halo of kernels applied in turn: the sum of their reaches."""
    above = below = 0
    for k in kernels:
        a, b = kernel_reach(k, op)
        above, below = above + a, below + b
    return above, below


def parallel_reach(kernels: Iterable[Kernel], op: str) -> tuple[int, int]:
    """The halo of kernels applied side by side to the same input: the largest reach."""
    above = below = 0
    for k in kernels:
        a, b = kernel_reach(k, op)
        above, below = max(above, a), max(below, b)
    return above, below


@dataclass(frozen=True)
class Window:
    """Output rows ``[start, stop)`` and the input rows filtered to make them."""

    start: int
    stop: int
    #: The input rows, in order: a contiguous range, or (``wrap``) an index array.
    rows: slice | NDArray[np.intp]
    #: Where output row ``start`` lies in the filtered window.
    offset: int

    @property
    def height(self) -> int:
        return self.stop - self.start


def strip_windows(height: int, strip_rows: int, reach: tuple[int, int], mode: str) -> list[Window]:
    """The windows of strips of ``strip_rows`` rows (the last may be shorter)."""
    if height < 1 or strip_rows < 1:
        raise ValueError(f"height and strip rows must be positive, got {height}, {strip_rows}")
    above, below = reach
    out = []
    for start in range(0, height, strip_rows):
        stop = min(height, start + strip_rows)
        if mode == "wrap":
            index = np.arange(start - above, stop + below) % height
            out.append(Window(start, stop, index.astype(np.intp), above))
            continue
        lo, hi = start - above, stop + below
        if lo <= 0 and hi >= height:
            lo, hi = 0, height
        elif lo <= 0:
            lo, hi = 0, min(height, stop + below + above + 1)
        elif hi >= height:
            lo, hi = max(0, start - above - below - 1), height
        out.append(Window(start, stop, slice(lo, hi), start - lo))
    return out


def window_rows(window: Window) -> int:
    """How many input rows a window holds."""
    if isinstance(window.rows, slice):
        return int(window.rows.stop - window.rows.start)
    return int(window.rows.size)
