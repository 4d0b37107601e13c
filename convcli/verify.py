"""``--verify``: compute a result on a second backend and measure the difference.

The result as ``convcli apply`` makes it (the backend it chose: ``direct`` or ``fft``) is
computed again on the other backend (``fft`` for ``direct``, ``direct`` for ``fft``), both
through the same strip engine, and compared twice:

* in float: the raw results (range policy ``none``, float output, alpha filtered as a plain
  channel so that no division by a small alpha magnifies the rounding), max and mean
  ``|a - b|``, against the rounding bound of :func:`convcli.compare.rounding_bound` for both
  backends and every kernel in the chain (``sum|K| * max|I|`` times each backend's relative
  error, the bound ``convcli compare`` uses and prints);
* in output levels: the results as written (range policy and rounding to the output depth),
  max and mean difference; a float difference within the bound can still move a value across
  a rounding tie, so 1 level is allowed (none is counted for float outputs).  With alpha, as
  a viewer sees them, by the rule of :mod:`convcli.compare` (:func:`written_levels`): the
  written alpha, and the written colour composited over black and over white through the
  alpha both results have.  A colour under an alpha written as 0 never counts, and one under
  a small alpha counts as little as it shows: dividing by an alpha of a few 16-bit steps turns
  float noise into many levels of straight colour that no viewer can see.

:attr:`Verification.ok` is false when either is exceeded: a backend is broken.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .compare import rounding_bound, visible
from .image_io import Samples, read_samples
from .kernels import Kernel
from .process import FilterOptions

#: Output levels two correct backends may differ by (a rounding tie moved by float error).
LEVEL_TOLERANCE = 1.0
_TOP = {"8": 255.0, "16": 65535.0}
#: Rows per band of the level comparison: its float64 temporaries stay small.
_BAND_ROWS = 256


@dataclass(frozen=True)
class Verification:
    """How far the result on a second backend is from the result as made."""

    backend: str  #: the backend(s) that made the result, e.g. ``direct`` or ``direct,fft``
    other: str  #: the backend it was checked against
    max_abs: float  #: raw float results
    mean_abs: float
    tolerance: float  #: the rounding bound for ``max_abs``
    depth: str  #: the output's
    #: results as written, in output levels (None for float output); with alpha, the
    #: composites over black and over white and the alpha (:func:`written_levels`)
    max_levels: float | None
    mean_levels: float | None

    @property
    def ok(self) -> bool:
        within_levels = self.max_levels is None or self.max_levels <= LEVEL_TOLERANCE
        return self.max_abs <= self.tolerance and within_levels

    def describe(self) -> str:
        """One line for the terminal."""
        levels = (
            ""
            if self.max_levels is None
            else f"; as written: max {self.max_levels:g} level(s), mean {self.mean_levels:.3g} "
            f"(allowed {LEVEL_TOLERANCE:g})"
        )
        verdict = "agree" if self.ok else "DISAGREE"
        return (
            f"verify: {self.backend} vs {self.other} {verdict}: float max |diff| "
            f"{self.max_abs:.3g}, mean {self.mean_abs:.3g} (tolerance {self.tolerance:.3g})"
            + levels
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "other_backend": self.other,
            "float_max_abs": self.max_abs,
            "float_mean_abs": self.mean_abs,
            "float_tolerance": self.tolerance,
            "depth": self.depth,
            "levels_max": self.max_levels,
            "levels_mean": self.mean_levels,
            "levels_tolerance": None if self.max_levels is None else LEVEL_TOLERANCE,
            "ok": self.ok,
        }


def verify_samples(
    stored: Samples,
    kernels: Sequence[Kernel] | None,
    options: FilterOptions | None = None,
    *,
    edge: str | None = None,
) -> Verification:
    """Filter ``stored`` as ``options`` say and again on the other backend; compare.

    ``stored.samples`` must be an array (read with ``lazy=False``).
    """
    from .pipeline.engine import filter_samples, plan_program

    options = options or FilterOptions()
    program = plan_program(stored, kernels, options, edge=edge)
    used = sorted({p.backend for p in program.plans})
    other = "direct" if used == ["fft"] else "fft"
    samples = np.asarray(stored.samples)

    def run(opts: FilterOptions) -> NDArray[Any]:
        out = filter_samples(samples, kernels, opts, bands=stored.bands, edge=edge)
        return np.asarray(out, dtype=np.float64)

    raw = replace(options, range_policy="none", depth="float", alpha="plain")
    a, b = run(raw), run(replace(raw, backend=other))
    diff = np.abs(a - b)
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    del a, b, diff
    depth = program.depth
    max_levels = mean_levels = None
    if depth != "float":
        a = filter_samples(samples, kernels, options, bands=stored.bands, edge=edge)
        b = filter_samples(
            samples, kernels, replace(options, backend=other), bands=stored.bands, edge=edge
        )
        max_levels, mean_levels = written_levels(a, b, depth, program.bands in ("LA", "RGBA"))
    peak = 1.0 if stored.depth != "float" else float(np.nanmax(np.abs(samples), initial=1.0))
    tolerance = _tolerance(program.kernels, used, other, options.dtype, peak, program.kind)
    return Verification(
        ",".join(used), other, max_abs, mean_abs, tolerance, depth, max_levels, mean_levels
    )


def written_levels(
    a: NDArray[Any], b: NDArray[Any], depth: str, alpha: bool
) -> tuple[float, float]:
    """Max and mean difference in output levels of two ``(H, W, C)`` results as written
    (uint8 or uint16 samples of ``depth``).

    With ``alpha`` (the last channel), what a viewer sees, by the rule of
    :mod:`convcli.compare`: the alpha, and each result's colour composited over black and
    over white (:func:`~convcli.compare.visible`, rounded to the depth's levels) through the
    alpha both results have (the smaller), so that a colour difference counts as far as it
    shows and not at all under an alpha written as 0 (pixels transparent in both never
    count; the mean is over these values).  The alpha's own share of the
    composites' difference (at most the alpha difference) is counted once, in the alpha: so
    one rounding tie, in colour or in alpha, moves the measure by at most one level, as
    without alpha (composites through each result's own alpha can differ by two levels where
    a colour and its alpha both sit on a tie: a 2x2 box makes alpha ties of half a level).
    """
    top = _TOP[depth]
    largest = total = 0.0
    count = 0
    for y in range(0, a.shape[0], _BAND_ROWS):
        ba = np.asarray(a[y : y + _BAND_ROWS], np.float64)
        bb = np.asarray(b[y : y + _BAND_ROWS], np.float64)
        diff = np.abs(ba - bb)  # (whole levels)
        if alpha:
            va, vb = ba / top, bb / top
            shared = np.minimum(va[..., -1:], vb[..., -1:])
            seen_a = visible(np.concatenate([va[..., :-1], shared], axis=2), "plain")
            seen_b = visible(np.concatenate([vb[..., :-1], shared], axis=2), "plain")
            seen = np.abs(np.rint(seen_a * top) - np.rint(seen_b * top))  # (straight colour)
            diff = np.concatenate([seen, diff[..., -1:]], axis=2)
        if diff.size:
            largest = max(largest, float(diff.max()))
            total += float(diff.sum())
            count += diff.size
    return largest, total / count if count else 0.0


def _tolerance(
    kernels: Sequence[Kernel], used: Sequence[str], other: str, dtype: str, peak: float, kind: str
) -> float:
    """The rounding bound of both computations, kernel after kernel (each one's input may be
    ``sum|K|`` times larger than the last one's)."""
    total = 0.0
    scale = peak
    for k in kernels:
        level = np.array([scale])
        bound = max(rounding_bound(level, k, b, dtype) for b in used)
        total += bound + rounding_bound(level, k, other, dtype)
        if kind == "chain":
            scale *= float(np.abs(k.weights).sum())
    return total


def verify_file(
    path: str | os.PathLike[str],
    kernels: Sequence[Kernel] | None,
    options: FilterOptions | None = None,
    *,
    edge: str | None = None,
    max_pixels: int | None = None,
) -> Verification:
    """:func:`verify_samples` on an image file (read whole)."""
    options = options or FilterOptions()
    with read_samples(path, max_pixels=max_pixels, lazy=False) as stored:
        return verify_samples(stored, kernels, options, edge=edge)
