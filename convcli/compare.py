"""The proof: convolution vs correlation of one image with one kernel, measured.

:func:`compare` computes, with the same backend and boundary,

* ``conv = convolve(I, K)``,
* ``corr = correlate(I, K)``,
* ``flip = correlate(I, rot180(K))``, which must equal ``conv`` for every kernel,

and measures ``conv - corr`` and ``conv - flip``.  The verdict:

* ``EQUAL``: ``conv == corr`` within the rounding bound (point-symmetric kernels);
* ``NEGATED``: ``conv == -corr`` within the bound (antisymmetric kernels);
* ``DIFFERENT``: neither; then ``conv == flip`` shows that the flip explains it all.

When both hold (both results are 0 within the bound, as on a flat image with a
zero-sum kernel) the kernel's own class decides: ``NEGATED`` for an
antisymmetric kernel, else ``EQUAL``, and the explanation says that both hold.

The rounding bound is derived from the computation, not guessed: float32
arithmetic over ``sum |K|`` times the largest input magnitude, looser for the
FFT backend (whose error spreads over the whole transform).

The numbers (:class:`DiffStats`; the JSON fields ``max_abs``, ``mean_abs``,
``differing_pixels``, ``differing_percent``, ``psnr``) follow one rule: the
maths on the raw results, the pixels on what is written and seen.

* ``max_abs``, ``mean_abs``: of ``|a - b|`` over every pixel and channel of the
  raw float results (before any range policy or rounding; for images with
  alpha, the filtered channels: premultiplied colour and alpha).  They decide
  the verdict.
* ``differing_pixels`` (``differing_percent``: of all pixels): pixels whose
  *visible* value *as written* differs in any channel.  As written means as
  ``convcli apply`` would write the result: mapped by the range policy and
  rounded to the output depth (8 or 16 bits; a float output is unmapped, and
  there a value differs when it differs by more than the rounding bound).
* ``psnr``: ``10 log10(peak^2 / MSE)`` of those same visible written values,
  with the depth's peak (255 for 8-bit, 65535 for 16-bit: 1 in the [0, 1]
  units used here), so it is never negative; for float output the peak is the
  range (max - min) of the two results.  Infinite (JSON ``null``) when identical.

Alpha (images with 2 or 4 channels: LA, RGBA).  As ``convcli apply`` does by
default, colour is premultiplied by alpha before filtering
(``alpha="premultiply"``), so the colour of transparent pixels, which is
meaningless (often the rest of the picture), does not leak into the results;
``alpha="plain"`` filters alpha as a plain channel.  As written, colour is
un-premultiplied and mapped, alpha clipped to [0, 1].  What a viewer sees
depends on the background, so a pixel's visible value is its colour
composited over black and over white (``c a`` and ``c a + 1 - a``): two pixels
look alike on every background exactly when both composites agree, and the
larger difference of the two is the largest on any grey background.  Pixels
transparent in both results never count, whatever their hidden colours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from .filtering import Plan, filter_array
from .image_io import Samples
from .kernels import Kernel, Symmetry

VERDICTS: tuple[str, ...] = ("equal", "negated", "different")
#: How an alpha channel is filtered (as ``convcli apply --alpha``).
ALPHA_MODES: tuple[str, ...] = ("premultiply", "plain")

#: Relative rounding error per unit of ``sum|K| * max|I|``, by backend and dtype.
_REL_ERROR = {
    ("direct", "float32"): 4e-7,
    ("direct", "float64"): 1e-15,
    ("fft", "float32"): 8e-6,
    ("fft", "float64"): 2e-14,
}

_DEPTH_MAX = {"8": 255.0, "16": 65535.0}


@dataclass(frozen=True)
class DiffStats:
    """How two results differ (the rules are in the module docstring)."""

    max_abs: float  #: largest |difference| of the raw results ([0, 1] units for integer images)
    mean_abs: float  #: mean |difference| of the raw results
    differing_pixels: int  #: pixels whose visible value as written differs in any channel
    differing_percent: float  #: the same, as a percentage of all pixels
    psnr: float  #: dB, on the visible written values over the depth's peak (inf when identical)


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`.

    ``conv``, ``corr`` and ``flip`` are the raw float results; for images with
    alpha filtered with ``alpha="premultiply"`` their colour channels are
    premultiplied (colour x alpha, the quantity that was filtered).
    """

    kernel: Kernel
    plan: Plan
    mode: str
    conv: NDArray[np.floating] | None  #: None from :func:`compare_samples` (not kept)
    corr: NDArray[np.floating] | None
    flip: NDArray[np.floating] | None
    conv_vs_corr: DiffStats
    conv_vs_negated_corr: DiffStats
    conv_vs_flipped_corr: DiffStats
    tolerance: float  #: the rounding bound used for "equal"
    verdict: str  #: "equal", "negated" or "different"
    range_policy: str = "clip"  #: how results were mapped to the output depth
    cval: float = 0.0  #: the value outside the image for the ``constant`` boundary
    precision: str = "float32"  #: the arithmetic
    depth: str = "8"  #: the output depth pixels were counted in
    alpha: str | None = None  #: how the alpha channel was filtered; None: no alpha channel

    @property
    def both_hold(self) -> bool:
        """Both ``conv == corr`` and ``conv == -corr`` within the bound (both results ~0)."""
        return (
            self.conv_vs_corr.max_abs <= self.tolerance
            and self.conv_vs_negated_corr.max_abs <= self.tolerance
        )

    def to_dict(self) -> dict[str, object]:
        """The stable machine-readable fields (``convcli compare --json``).

        ``max_abs``/``mean_abs`` are on the raw results; ``differing_pixels``,
        ``differing_percent`` and ``psnr`` on the visible values as written in
        ``depth`` after ``range_policy`` (see the module docstring); ``alpha`` is
        ``premultiply``, ``plain`` or null (no alpha channel).
        """
        k = self.kernel

        def stats(s: DiffStats) -> dict[str, object]:
            return {
                "max_abs": s.max_abs,
                "mean_abs": s.mean_abs,
                "differing_pixels": s.differing_pixels,
                "differing_percent": s.differing_percent,
                "psnr": None if math.isinf(s.psnr) else s.psnr,
            }

        return {
            "kernel": {
                "name": k.name,
                "shape": list(k.shape),
                "origin": list(k.origin),
                "sum": k.sum,
                "symmetry": k.symmetry.value,
                "separable": k.separable,
            },
            "backend": self.plan.backend,
            "boundary": self.mode,
            "cval": self.cval,
            "precision": self.precision,
            "depth": self.depth,
            "alpha": self.alpha,
            "range_policy": self.range_policy,
            "tolerance": self.tolerance,
            "conv_vs_corr": stats(self.conv_vs_corr),
            "conv_vs_flipped_corr": stats(self.conv_vs_flipped_corr),
            "verdict": self.verdict,
            "explanation": self.explanation,
        }

    @property
    def explanation(self) -> str:
        """The verdict as one sentence a person can check."""
        k = self.kernel
        weights_symmetric = bool(np.array_equal(k.weights, k.weights[::-1, ::-1]))
        both = (
            " (both results are 0 within the bound on this image, so convolution = "
            "correlation and convolution = -correlation both hold)"
            if self.both_hold
            else ""
        )
        if self.verdict == "equal":
            if k.symmetry is Symmetry.SYMMETRIC:
                why = "the kernel is point-symmetric (K == rot180 K), so flipping changes nothing"
            else:
                why = "the two results agree on this image although the kernel is not symmetric"
            return (
                f"EQUAL - {why}{both}: max |diff| {self.conv_vs_corr.max_abs:.3g} "
                f"(bound {self.tolerance:.2g})"
            )
        if self.verdict == "negated":
            return (
                f"NEGATED - the kernel is antisymmetric (K == -rot180 K){both}: convolution = "
                f"-correlation, max |conv + corr| {self.conv_vs_negated_corr.max_abs:.3g} "
                f"(bound {self.tolerance:.2g})"
            )
        shifted = ""
        if weights_symmetric and not k.centred:
            shifted = (
                " (the weights are symmetric, but the origin is not their centre, so "
                "flipping moves the anchor: the results are shifted copies)"
            )
        return (
            f"DIFFERENT{shifted} - max |diff| {self.conv_vs_corr.max_abs:.3g}; correlating "
            f"with the rotated kernel reproduces convolution (max |diff| "
            f"{self.conv_vs_flipped_corr.max_abs:.3g}, bound {self.tolerance:.2g})"
        )


def rounding_bound(image: NDArray[np.floating], kernel: Kernel, backend: str, dtype: str) -> float:
    """Largest difference attributable to floating-point rounding for this computation."""
    rel = _REL_ERROR[(backend, dtype)]
    scale = float(np.abs(kernel.weights).sum()) * max(float(np.abs(image).max()), 1e-30)
    taps = math.sqrt(kernel.size)
    return rel * scale * max(1.0, taps)


def default_display_policy(kernel: Kernel) -> str:
    """``offset`` for zero-sum kernels (signed responses: 0 becomes mid-grey), else ``clip``."""
    total = abs(kernel.sum)
    return "offset" if total <= 1e-6 * float(np.abs(kernel.weights).sum()) else "clip"


def has_alpha_channel(values: NDArray[np.floating]) -> bool:
    """Whether an ``(H, W, C)`` array's last channel is alpha: 2 (LA) or 4 (RGBA) channels."""
    return values.ndim == 3 and values.shape[2] in (2, 4)


def _hwc(values: NDArray[np.floating]) -> NDArray[np.floating]:
    arr = np.asarray(values)
    return arr[:, :, np.newaxis] if arr.ndim == 2 else arr


def straight(
    values: NDArray[np.floating], alpha: str
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """A filtered result with alpha as (straight colour, alpha clipped to [0, 1]), as
    ``convcli apply`` writes it (:func:`convcli.process.split_alpha`)."""
    from .process import split_alpha

    return split_alpha(_hwc(values), alpha)


def as_written(
    values: NDArray[np.floating],
    policy: str,
    depth: str,
    alpha: str | None = None,
    *,
    stretch: tuple[float, float] | None = None,
) -> NDArray[np.float64]:
    """A raw result as ``convcli apply`` writes it, ``(H, W, C)`` float64.

    Colour mapped by the range ``policy`` (unmapped for ``float`` depth),
    alpha (if ``alpha`` names how it was filtered) clipped to [0, 1] after the
    colour is un-premultiplied, everything rounded to the steps of ``depth``.
    ``stretch``: for ``rescale``, the whole result's colour (min, max) when ``values`` is
    a band of its rows.
    """
    from .process import apply_range

    arr = _hwc(values)
    if alpha is None:
        colour, a = arr, None
    else:
        colour, a = straight(arr, alpha)
    if depth != "float":
        colour = apply_range(colour, policy, depth, stretch=stretch)[0]
    out = np.asarray(colour, np.float64) if a is None else np.concatenate(
        [np.asarray(colour, np.float64), np.asarray(a, np.float64)], axis=2
    )  # fmt: skip
    if depth in _DEPTH_MAX:
        top = _DEPTH_MAX[depth]
        out = np.rint(np.clip(out * top, 0.0, top)) / top
    return out


def visible(values: NDArray[np.floating], alpha: str | None = None) -> NDArray[np.float64]:
    """What a viewer sees of a result: the values, or with alpha the composites.

    With alpha, the colour composited over black (``c a``) and over white
    (``c a + 1 - a``), side by side along the channel axis (``2 (C - 1)``
    channels).  ``values`` are raw (premultiplied for ``alpha="premultiply"``)
    or already written (pass ``alpha="plain"``: written colour is straight).
    """
    arr = np.asarray(_hwc(values), np.float64)
    if alpha is None:
        return arr
    colour, a = straight(arr, alpha)
    black = colour * a
    return np.concatenate([black, black + (1.0 - a)], axis=2)


def visible_difference(result: Comparison) -> NDArray[np.float64]:
    """``|conv - corr|`` per pixel of the raw results as seen, max over channels (the heat map),
    computed in bands of rows."""
    return difference_map(result.conv, result.corr, result.alpha)


def difference_map(
    conv: NDArray[np.floating], corr: NDArray[np.floating], alpha: str | None
) -> NDArray[np.float64]:
    """:func:`visible_difference` of two raw results (whole, or the same rows of both)."""
    conv, corr = _hwc(conv), _hwc(corr)
    out = np.empty(conv.shape[:2], np.float64)
    for y in range(0, conv.shape[0], _BLOCK_ROWS):
        rows = slice(y, y + _BLOCK_ROWS)
        diff = np.abs(visible(conv[rows], alpha) - visible(corr[rows], alpha))
        out[rows] = diff.max(axis=2)
    return out


#: Rows per block in :func:`diff_stats`: the float64 temporaries stay small.
_BLOCK_ROWS = 16


def _colour_bounds(values: NDArray[np.floating], alpha: str | None) -> tuple[float, float]:
    """(min, max) of a raw result's colour as ``convcli apply`` maps it (straight colour)."""
    lo, hi = math.inf, -math.inf
    for y in range(0, values.shape[0], _BLOCK_ROWS):
        block = values[y : y + _BLOCK_ROWS]
        colour = block if alpha is None else straight(block, alpha)[0]
        lo, hi = min(lo, float(colour.min())), max(hi, float(colour.max()))
    return lo, hi


class _DiffAccumulator:
    """:func:`diff_stats` over bands of rows fed in order (:meth:`add`), then :meth:`result`.

    Sums are added band by band in the order given, so the same bands give the same bits
    whether they come from whole arrays or from strips."""

    def __init__(
        self,
        depth: str,
        policy: str,
        alpha: str | None,
        tolerance: float,
        sign: float = 1.0,
        stretch: tuple[tuple[float, float] | None, tuple[float, float] | None] = (None, None),
    ) -> None:
        self.depth, self.policy, self.alpha = depth, policy, alpha
        self.tolerance, self.sign, self.stretch = tolerance, sign, stretch
        self.max_abs = self.sum_abs = self.sum_sq = 0.0
        self.count = self.values = self.samples = self.pixels = 0
        self.lo, self.hi = math.inf, -math.inf

    def seen(self, values: NDArray[np.float64], which: int) -> NDArray[np.float64]:
        """The visible written values of a band of result ``which`` (0: a, 1: b)."""
        written = "plain" if self.alpha is not None else None  # written colour is straight
        shown = as_written(values, self.policy, self.depth, self.alpha, stretch=self.stretch[which])
        return visible(shown, written)

    def parts(
        self,
        a: NDArray[np.floating],
        b: NDArray[np.floating],
        seen_a: NDArray[np.float64] | None = None,
    ) -> tuple:
        """One band's contribution (thread-safe: touches no state); ``seen_a``: ``a``'s
        :meth:`seen` if the caller has it already."""
        ba = np.asarray(a, np.float64)
        bb = np.asarray(b, np.float64) * self.sign
        diff = np.abs(ba - bb)
        max_abs = float(diff.max()) if diff.size else 0.0
        sum_abs = float(diff.sum()) if diff.size else 0.0
        va = self.seen(ba, 0) if seen_a is None else seen_a
        vb = self.seen(bb, 1)
        lo, hi = math.inf, -math.inf
        if self.depth in _DEPTH_MAX:
            top = _DEPTH_MAX[self.depth]
            va, vb = np.rint(va * top) / top, np.rint(vb * top) / top  # composites, written
            differs = va != vb
        else:
            differs = np.abs(va - vb) > self.tolerance
            if va.size:
                lo = min(float(va.min()), float(vb.min()))
                hi = max(float(va.max()), float(vb.max()))
        count = int(np.count_nonzero(differs.any(axis=2)))
        sum_sq = float(np.sum((va - vb) ** 2))
        return max_abs, sum_abs, count, sum_sq, va.size, lo, hi, a.size, a.shape[0] * a.shape[1]

    def merge(self, part: tuple) -> None:
        """Add a band's :meth:`parts`, in row order."""
        max_abs, sum_abs, count, sum_sq, values, lo, hi, samples, pixels = part
        self.max_abs = max(self.max_abs, max_abs)
        self.sum_abs += sum_abs
        self.count += count
        self.sum_sq += sum_sq
        self.values += values
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        self.samples += samples
        self.pixels += pixels

    def add(self, a: NDArray[np.floating], b: NDArray[np.floating]) -> None:
        self.merge(self.parts(a, b))

    def result(self) -> DiffStats:
        mean_abs = self.sum_abs / self.samples if self.samples else 0.0
        if self.depth in _DEPTH_MAX:
            peak = 1.0
        else:
            peak = self.hi - self.lo if self.values else 0.0
        mse = self.sum_sq / self.values if self.values else 0.0
        if mse == 0.0:
            psnr = math.inf
        else:
            psnr = 10.0 * math.log10(peak**2 / mse) if peak > 0 else 0.0
        percent = 100.0 * self.count / max(self.pixels, 1)
        return DiffStats(self.max_abs, mean_abs, self.count, percent, psnr)


def diff_stats(
    a: NDArray[np.floating],
    b: NDArray[np.floating],
    depth: str,
    policy: str = "clip",
    *,
    alpha: str | None = None,
    tolerance: float = 0.0,
    sign: float = 1.0,
) -> DiffStats:
    """Difference statistics of two raw results of the same shape ``(H, W[, C])``.

    ``max_abs``/``mean_abs`` on the raw values; the pixel count and PSNR on the
    visible values as written in ``depth`` after the range ``policy``
    (``alpha``: how the last channel was filtered, None when it is not alpha).
    In ``float`` depth a value differs when it differs by more than ``tolerance``.
    ``sign=-1`` compares ``a`` with ``-b``.  Computed in bands of rows, so the float64
    temporaries stay the size of a band.
    """
    a, b = _hwc(a), _hwc(b)
    stretch = (None, None)
    if policy == "rescale" and depth != "float":
        stretch = (_colour_bounds(a, alpha), _colour_bounds(sign * b, alpha))
    acc = _DiffAccumulator(depth, policy, alpha, tolerance, sign, stretch)
    for y in range(0, a.shape[0], _BLOCK_ROWS):
        acc.add(a[y : y + _BLOCK_ROWS], b[y : y + _BLOCK_ROWS])
    return acc.result()


def _verdict(kernel: Kernel, vs_corr: DiffStats, vs_neg: DiffStats, tol: float) -> str:
    equal, negated = vs_corr.max_abs <= tol, vs_neg.max_abs <= tol
    if equal and negated:  # both results ~0: the kernel's own class is consistent with them
        return "negated" if kernel.symmetry is Symmetry.ANTISYMMETRIC else "equal"
    if equal:
        return "equal"
    if negated:
        return "negated"
    return "different"


def compare(
    image: NDArray[np.floating],
    kernel: Kernel,
    *,
    backend: str = "auto",
    mode: str = "reflect",
    cval: float = 0.0,
    dtype: str = "float32",
    depth: str = "8",
    range_policy: str | None = None,
    alpha: str = "premultiply",
) -> Comparison:
    """Convolve and correlate ``image`` with ``kernel`` and measure how they differ.

    ``depth`` ("8", "16" or "float") and ``range_policy`` (default: ``offset``
    for zero-sum kernels, else ``clip``) decide what "a pixel differs" means:
    its value as written into that depth, or a difference beyond the rounding
    bound for float.  An image with 2 or 4 channels has alpha last, filtered
    as ``alpha`` says (``premultiply`` or ``plain``, as ``convcli apply``).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).random((16, 16))
    >>> compare(img, Kernel([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) ).verdict
    'equal'
    >>> compare(img, Kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])).verdict
    'negated'
    >>> compare(img, Kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])).verdict
    'different'
    """
    if alpha not in ALPHA_MODES:
        from .errors import UsageError

        raise UsageError(f"alpha mode must be one of {', '.join(ALPHA_MODES)}, got '{alpha}'")
    arr = np.asarray(image)
    alpha_mode = alpha if has_alpha_channel(arr) else None
    if alpha_mode == "premultiply":  # in the arithmetic's precision, as convcli apply does
        arr = np.array(arr, dtype=np.dtype(dtype))
        arr[..., :-1] *= arr[..., -1:]
    conv, plan = filter_array(
        arr, kernel, op="convolve", mode=mode, cval=cval, backend=backend, dtype=dtype
    )
    # the same backend for all three, so the comparison isolates the operation
    chosen = plan.backend
    corr, _ = filter_array(
        arr, kernel, op="correlate", mode=mode, cval=cval, backend=chosen, dtype=dtype
    )
    flip, _ = filter_array(
        arr, kernel.rotated(), op="correlate", mode=mode, cval=cval, backend=chosen,
        dtype=dtype,
    )  # fmt: skip
    tol = rounding_bound(arr, kernel, chosen, dtype)
    policy = range_policy or default_display_policy(kernel)
    vs_corr = diff_stats(conv, corr, depth, policy, alpha=alpha_mode, tolerance=tol)
    vs_neg = diff_stats(conv, corr, "float", tolerance=tol, sign=-1.0)  # its raw max is used
    vs_flip = diff_stats(conv, flip, depth, policy, alpha=alpha_mode, tolerance=tol)
    verdict = _verdict(kernel, vs_corr, vs_neg, tol)
    return Comparison(
        kernel=kernel,
        plan=plan,
        mode=mode,
        conv=conv,
        corr=corr,
        flip=flip,
        conv_vs_corr=vs_corr,
        conv_vs_negated_corr=vs_neg,
        conv_vs_flipped_corr=vs_flip,
        tolerance=tol,
        verdict=verdict,
        range_policy=policy,
        cval=float(cval),
        precision=str(np.dtype(dtype)),
        depth=depth,
        alpha=alpha_mode,
    )


def compare_samples(
    stored: Samples,
    kernel: Kernel,
    *,
    backend: str = "auto",
    mode: str = "reflect",
    cval: float = 0.0,
    dtype: str = "float32",
    depth: str | None = None,
    range_policy: str | None = None,
    alpha: str = "premultiply",
    strip_rows: int | None = None,
    workers: int | None = None,
    visit: Callable[..., None] | None = None,
) -> Comparison:
    """:func:`compare` of an image's stored samples, strip by strip: the same numbers and
    verdict (on the direct backend, to the bit), in memory that does not grow with the
    image; the three results are not kept (``conv``, ``corr`` and ``flip`` are None).

    Each strip's window (with the halo both operations need) is converted, premultiplied,
    filtered three times and measured in bands of rows while it is in cache; ``rescale``
    takes a first pass for the results' bounds.  ``visit(start, source, conv, corr,
    conv_bounds, corr_bounds)``, if given, sees every strip (from the worker threads, each
    strip once): its first row, the source's unit-scale values, the raw results, and for
    ``rescale`` the whole results' colour bounds (else None), to draw a panel from.
    """
    from .backends import direct, fft
    from .backends.auto import direct_method
    from .errors import FilterError, UsageError
    from .filtering import _all_finite, plan_filter
    from .image_io import unit_float
    from .pipeline.engine import in_order
    from .pipeline.strips import parallel_reach, strip_windows, window_rows

    if alpha not in ALPHA_MODES:
        raise UsageError(f"alpha mode must be one of {', '.join(ALPHA_MODES)}, got '{alpha}'")
    dt = np.dtype(dtype)
    depth = depth or stored.depth
    alpha_mode = alpha if stored.channels in (2, 4) else None
    if getattr(stored.samples, "sequential", False) and mode == "wrap":
        reader = stored.samples  # wrap needs the last rows first: read the samples whole
        stored = replace(stored, samples=reader[0 : stored.height])
        reader.close()

    def rewind() -> None:  # a front-to-back reader starts again for the next pass
        again = getattr(stored.samples, "rewind", None)
        if again is not None:
            again()
    height = stored.height
    shape = (stored.height, stored.width, stored.channels)

    def values_of(rows: slice | NDArray[np.intp]) -> NDArray[np.floating]:
        raw = stored.samples[rows]
        values = np.array(raw, np.float32) if stored.depth == "float" else unit_float(raw, stored.depth)
        values = values.astype(dt, copy=False)
        if alpha_mode == "premultiply":  # in the arithmetic's precision, as apply does
            values[..., :-1] *= values[..., -1:]
        return values

    block = 1024
    retain = getattr(stored.samples, "retain", None)
    if retain is not None:
        retain(2 * block)
    peak = 0.0
    finite = True
    for y in range(0, height, block):
        part = values_of(slice(y, y + block))
        peak = max(peak, float(np.abs(part).max()))
        finite = finite and _all_finite(part)
    rewind()
    plan = plan_filter(shape, kernel, backend=backend, dtype=dt)
    if plan.backend == "fft" and not finite:
        if backend == "fft":
            raise FilterError(
                "the image holds NaN or infinite values, which the FFT backend would spread "
                "over the whole image; use the direct backend"
            )
        plan = Plan("direct", direct_method(kernel), "image holds NaN/Inf: direct keeps them "
                    "local (fft would spread them everywhere)", plan.estimate_ms)  # fmt: skip
    chosen = plan.backend
    rel = _REL_ERROR[(chosen, str(dt))]
    scale = float(np.abs(kernel.weights).sum()) * max(peak, 1e-30)  # as rounding_bound
    tol = rel * scale * max(1.0, math.sqrt(kernel.size))
    policy = range_policy or default_display_policy(kernel)
    rotated = kernel.rotated()
    reach = parallel_reach([rotated, kernel], "correlate")
    if strip_rows is None:
        row_bytes = stored.width * stored.channels * dt.itemsize
        target = (64 << 20) if chosen == "fft" else (4 << 20)
        strip_rows = max(target // max(row_bytes, 1), 4 * (reach[0] + reach[1]))
    strip_rows = max(_BLOCK_ROWS, -(-strip_rows // _BLOCK_ROWS) * _BLOCK_ROWS)  # whole bands
    windows = strip_windows(height, strip_rows, reach, mode)
    n_workers = 1 if chosen == "fft" else (workers or direct.filter_threads())
    if retain is not None:  # the rows of every window that can be in flight at once
        retain((2 * n_workers + 2) * max(window_rows(w) for w in windows))

    def correlate(values: NDArray, k: Kernel, keep: slice) -> NDArray:
        if chosen == "fft":
            return fft.correlate(values, k, mode, cval)[keep]
        threads = 1 if n_workers > 1 else None
        return direct.correlate(values, k, mode, cval, threads=threads,
                                band=(keep.start, keep.stop))[keep]  # fmt: skip

    def results(w) -> tuple[NDArray, NDArray, NDArray]:
        values = values_of(w.rows)
        keep = slice(w.offset, w.offset + w.height)
        conv = correlate(values, rotated, keep)  # convolve(I, K) = correlate(I, rot180 K)
        corr = correlate(values, kernel, keep)
        flip = correlate(values, kernel.rotated(), keep)
        return conv, corr, flip

    def run(job: Callable) -> Iterator:
        return in_order(job, windows, n_workers)

    stretch: dict[str, tuple[float, float] | None] = {"conv": None, "corr": None, "flip": None}
    found_bounds = stretch
    if policy == "rescale" and (depth != "float" or visit is not None):

        def bounds(w):
            return [_colour_bounds(r, alpha_mode) for r in results(w)]

        found = [(math.inf, -math.inf)] * 3
        for strip in run(bounds):
            found = [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(found, strip, strict=True)]
        found_bounds = dict(zip(("conv", "corr", "flip"), found, strict=True))
        if depth != "float":  # the written values are stretched by them
            stretch = found_bounds
        rewind()
    acc_corr = _DiffAccumulator(depth, policy, alpha_mode, tol, 1.0,
                                (stretch["conv"], stretch["corr"]))  # fmt: skip
    acc_neg = _DiffAccumulator("float", "clip", None, tol, -1.0)
    acc_flip = _DiffAccumulator(depth, policy, alpha_mode, tol, 1.0,
                                (stretch["conv"], stretch["flip"]))  # fmt: skip

    def measure(w):
        conv, corr, flip = results(w)
        if visit is not None:
            raw = stored.samples[w.start : w.stop]
            source = np.array(raw, np.float32) if stored.depth == "float" else unit_float(
                raw, stored.depth
            )  # fmt: skip
            visit(w.start, source, conv, corr, found_bounds["conv"], found_bounds["corr"])
        out = []
        for y in range(0, conv.shape[0], _BLOCK_ROWS):
            rows = slice(y, y + _BLOCK_ROWS)
            seen = acc_corr.seen(np.asarray(conv[rows], np.float64), 0)  # shared by both pairs
            out.append((
                acc_corr.parts(conv[rows], corr[rows], seen),
                acc_neg.parts(conv[rows], corr[rows]),
                acc_flip.parts(conv[rows], flip[rows], seen),
            ))  # fmt: skip
        return out

    for strip in run(measure):
        for a, b, c in strip:  # in row order: the sums come out as from whole arrays
            acc_corr.merge(a)
            acc_neg.merge(b)
            acc_flip.merge(c)
    vs_corr, vs_neg, vs_flip = acc_corr.result(), acc_neg.result(), acc_flip.result()
    return Comparison(
        kernel=kernel,
        plan=plan,
        mode=mode,
        conv=None,
        corr=None,
        flip=None,
        conv_vs_corr=vs_corr,
        conv_vs_negated_corr=vs_neg,
        conv_vs_flipped_corr=vs_flip,
        tolerance=tol,
        verdict=_verdict(kernel, vs_corr, vs_neg, tol),
        range_policy=policy,
        cval=float(cval),
        precision=str(dt),
        depth=depth,
        alpha=alpha_mode,
    )
