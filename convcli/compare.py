"""The proof: convolution vs correlation of one image with one kernel, measured.

:func:`compare` computes, with the same backend and boundary,

* ``conv = convolve(I, K)``, as convcli (and ``apply``) computes it:
  ``correlate(I, rot180 K)``;
* ``corr = correlate(I, K)``;
* ``flip = correlate(I, rot180(K))`` computed another way, with the image turned
  instead of the kernel (``rot180(correlate(rot180 I, K))``), which must equal
  ``conv`` within rounding for every kernel;
* ``conv - corr`` directly as ``correlate(I, rot180 K - K)`` and ``conv + corr`` as
  ``correlate(I, rot180 K + K)`` (:meth:`Kernel.flip_difference`): both operations
  are linear in the kernel, so these carry no cancellation, and for a symmetric
  (antisymmetric) kernel the difference (sum) kernel is zero and so is the result.

The verdict, from those two:

* ``EQUAL``: ``conv - corr`` is 0 within its rounding bound (point-symmetric kernels);
* ``NEGATED``: ``conv + corr`` is 0 within its bound (antisymmetric kernels);
* ``DIFFERENT``: neither; then ``conv == flip`` shows that the flip explains it all.

When both hold (both results are 0 within the bound, as on a flat image with a
zero-sum kernel) the kernel's own class decides: ``NEGATED`` for an
antisymmetric kernel, else ``EQUAL``, and the explanation says that both hold.

The difference and sum kernels run on the backend ``auto`` picks for them, whatever
the backend asked for ``conv``, ``corr`` and ``flip``, so the verdict never depends
on it.  The rounding bounds are derived from the computation, not guessed: the
arithmetic's relative error times ``sum |D| * max(1, max |I|)`` for the kernel ``D``
that computed the quantity (looser for the FFT backend, whose error spreads over
the whole transform).

The numbers (:class:`DiffStats`; the JSON fields ``max_abs``, ``mean_abs``,
``differing_pixels``, ``differing_percent``, ``psnr``) follow one rule: the
maths on the raw results, the pixels on what is written and seen.

* ``max_abs``, ``mean_abs``: of ``|a - b|`` over every pixel and channel of the
  raw float results (before any range policy or rounding; for images with
  alpha, the filtered channels: premultiplied colour and alpha); for
  ``conv - corr``, of the difference kernel's result.  They decide the verdict.
* ``differing_pixels`` (``differing_percent``: of all pixels): pixels whose
  *visible* value *as written* differs in any channel.  As written means as
  ``convcli apply`` would write the result: mapped by the range policy and
  rounded to the output depth from the arithmetic's precision (8 or 16 bits; a
  float output is unmapped, and there a value differs when it differs by more
  than the rounding bound).
* ``psnr``: ``10 log10(peak^2 / MSE)`` of those same visible written values,
  with the depth's peak (255 for 8-bit, 65535 for 16-bit: 1 in the [0, 1]
  units used here), so it is never negative; for float output the peak is the
  range (max - min) of the two results.  Infinite (JSON ``null``) when identical.

Alpha (images with 2 or 4 channels: LA, RGBA).  As ``convcli apply`` does by
default, colour is premultiplied by alpha before filtering
(``alpha="premultiply"``), so the colour of transparent pixels, which is
meaningless (often the rest of the picture), does not leak into the results;
``alpha="plain"`` filters alpha as a plain channel.  As written, colour is
un-premultiplied and mapped, alpha clipped to [0, 1] (an alpha that rounds to
0 in the output depth is transparent: colour and alpha 0).  What a viewer
sees depends on the background, so a pixel's visible value is its colour
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

from .filtering import Plan
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


def rounding_bound(image: NDArray[np.floating], kernel: Kernel, backend: str, dtype: str) -> float:
    """Largest difference that floating-point rounding can explain in ``correlate(image,
    kernel)`` on ``backend`` in ``dtype``: the relative error times ``sum|K| * max|I|``,
    times ``sqrt(taps)`` (used by compare's bounds and by ``--verify``)."""
    peak = float(np.abs(image).max()) if np.size(image) else 0.0
    scale = float(np.abs(kernel.weights).sum()) * max(peak, 1e-30)
    return _REL_ERROR[(backend, str(dtype))] * scale * max(1.0, math.sqrt(kernel.size))


@dataclass(frozen=True)
class DiffStats:
    """How two results differ (the rules are in the module docstring)."""

    max_abs: float  #: largest |difference| of the raw results ([0, 1] units for integer images)
    mean_abs: float  #: mean |difference| of the raw results
    differing_pixels: int  #: pixels whose visible value as written differs in any channel
    differing_percent: float  #: the same, as a percentage of all pixels
    psnr: float  #: dB, on the visible written values over the depth's peak (inf when identical)


@dataclass(frozen=True)
class Extent:
    """The size of a raw result that should be 0 (``conv + corr`` for NEGATED)."""

    max_abs: float  #: largest |value|, computed with the sum kernel rot180 K + K


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`.

    ``conv``, ``corr`` and ``flip`` are the raw float results (``flip``: correlate(I,
    rot180 K) computed with the image turned, see the module docstring), ``diff`` is
    ``conv - corr`` computed with the difference kernel; for images with alpha filtered
    with ``alpha="premultiply"`` their colour channels are premultiplied (colour x
    alpha, the quantity that was filtered).  ``tolerance`` is the rounding bound of one
    result (the flip identity, float pixel counts); the verdict uses
    ``difference_tolerance`` and ``sum_tolerance``.
    """

    kernel: Kernel
    plan: Plan
    mode: str
    conv: NDArray[np.floating] | None  #: None from :func:`compare_samples` (not kept)
    corr: NDArray[np.floating] | None
    flip: NDArray[np.floating] | None
    conv_vs_corr: DiffStats
    conv_vs_negated_corr: Extent
    conv_vs_flipped_corr: DiffStats
    tolerance: float  #: the rounding bound used for "equal"
    verdict: str  #: "equal", "negated" or "different"
    range_policy: str = "clip"  #: how results were mapped to the output depth
    cval: float = 0.0  #: the value outside the image for the ``constant`` boundary
    precision: str = "float32"  #: the arithmetic
    depth: str = "8"  #: the output depth pixels were counted in
    alpha: str | None = None  #: how the alpha channel was filtered; None: no alpha channel
    #: the rounding bound on ``conv - corr`` computed with the difference kernel (the verdict's)
    difference_tolerance: float = 0.0
    sum_tolerance: float = 0.0  #: the same for ``conv + corr`` (NEGATED)
    difference_plan: Plan | None = None  #: how ``conv - corr`` was computed (None: it is 0)
    diff: NDArray[np.floating] | None = None  #: ``conv - corr`` (kept results only)
    #: for ``rescale``: the colour bounds of the results by name, else None
    bounds: dict[str, tuple[float, float] | None] | None = None

    @property
    def both_hold(self) -> bool:
        """Both ``conv == corr`` and ``conv == -corr`` within the bound (both results ~0)."""
        return (
            self.conv_vs_corr.max_abs <= self.difference_tolerance
            and self.conv_vs_negated_corr.max_abs <= self.sum_tolerance
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
            "tolerance": self.difference_tolerance,
            "negated_tolerance": self.sum_tolerance,
            "result_tolerance": self.tolerance,
            "difference_backend": None
            if self.difference_plan is None
            else self.difference_plan.backend,
            "conv_vs_corr": stats(self.conv_vs_corr),
            "conv_vs_flipped_corr": stats(self.conv_vs_flipped_corr),
            "verdict": self.verdict,
            "explanation": self.explanation,
        }

    @property
    def symmetry_words(self) -> str:
        """The kernel's symmetry class about its origin, in words."""
        k = self.kernel
        if k.symmetry is Symmetry.SYMMETRIC:
            return "the kernel is point-symmetric about its origin (K == rot180 K)"
        if k.symmetry is Symmetry.ANTISYMMETRIC:
            return "the kernel is antisymmetric about its origin (K == -rot180 K)"
        return "the kernel is asymmetric about its origin (K != rot180 K, K != -rot180 K)"

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
        bound = f"(bound {self.difference_tolerance:.2g})"
        if self.verdict == "equal":
            if k.symmetry is Symmetry.SYMMETRIC:
                why = "the kernel is point-symmetric (K == rot180 K), so flipping changes nothing"
            else:
                why = "the two results agree on this image although the kernel is not symmetric"
            return f"EQUAL - {why}{both}: max |diff| {self.conv_vs_corr.max_abs:.3g} {bound}"
        if self.verdict == "negated":
            return (
                f"NEGATED - the kernel is antisymmetric (K == -rot180 K){both}: convolution = "
                f"-correlation, max |conv + corr| {self.conv_vs_negated_corr.max_abs:.3g} "
                f"(bound {self.sum_tolerance:.2g})"
            )
        shifted = ""
        if weights_symmetric and not k.centred:
            shifted = (
                " (the weights are symmetric, but the origin is not their centre, so "
                "flipping moves the anchor: the results are shifted copies)"
            )
        return (
            f"DIFFERENT{shifted} - max |diff| {self.conv_vs_corr.max_abs:.3g} {bound}; "
            f"correlating with the rotated kernel reproduces convolution (max |diff| "
            f"{self.conv_vs_flipped_corr.max_abs:.3g}, bound {self.tolerance:.2g})"
        )


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
    values: NDArray[np.floating], alpha: str, depth: str = "float"
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """A filtered result with alpha as (straight colour, alpha clipped to [0, 1]), as
    ``convcli apply`` writes it in ``depth`` (:func:`convcli.process.split_alpha`: an alpha
    that rounds to 0 there is transparent)."""
    from .process import split_alpha

    return split_alpha(_hwc(values), alpha, depth)


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
        colour, a = straight(arr, alpha, depth)
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


def difference_map(
    conv: NDArray[np.floating], corr: NDArray[np.floating], alpha: str | None
) -> NDArray[np.float64]:
    """``|conv - corr|`` per pixel of two raw results as seen (the composites with alpha),
    max over channels (whole, or the same rows of both), computed in bands of rows."""
    conv, corr = _hwc(conv), _hwc(corr)
    out = np.empty(conv.shape[:2], np.float64)
    for y in range(0, conv.shape[0], _BLOCK_ROWS):
        rows = slice(y, y + _BLOCK_ROWS)
        diff = np.abs(visible(conv[rows], alpha) - visible(corr[rows], alpha))
        out[rows] = diff.max(axis=2)
    return out


#: Rows per block in :func:`diff_stats`: the float64 temporaries stay small.
_BLOCK_ROWS = 16


def _colour_bounds(
    values: NDArray[np.floating], alpha: str | None, depth: str = "float"
) -> tuple[float, float]:
    """(min, max) of a raw result's colour as ``convcli apply`` maps it to ``depth``
    (straight colour)."""
    lo, hi = math.inf, -math.inf
    for y in range(0, values.shape[0], _BLOCK_ROWS):
        block = values[y : y + _BLOCK_ROWS]
        colour = block if alpha is None else straight(block, alpha, depth)[0]
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
        stretch = (_colour_bounds(a, alpha, depth), _colour_bounds(sign * b, alpha, depth))
    acc = _DiffAccumulator(depth, policy, alpha, tolerance, sign, stretch)
    for y in range(0, a.shape[0], _BLOCK_ROWS):
        acc.add(a[y : y + _BLOCK_ROWS], b[y : y + _BLOCK_ROWS])
    return acc.result()


def _verdict(
    kernel: Kernel, vs_corr: DiffStats, vs_neg: DiffStats, tol_diff: float, tol_sum: float
) -> str:
    equal, negated = vs_corr.max_abs <= tol_diff, vs_neg.max_abs <= tol_sum
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

    The same computation as :func:`compare_samples` (so the same numbers, verdict and
    panel), keeping the results: ``conv``, ``corr``, ``flip`` and ``diff``.

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
    from .filtering import _as_hwc, _compute_dtype
    from .image_io import Samples

    dt = _compute_dtype(dtype)
    arr, squeeze = _as_hwc(image, dt)
    bands = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(arr.shape[2], "L" * arr.shape[2])
    result = compare_samples(
        Samples(arr, bands, "float"), kernel, backend=backend, mode=mode, cval=cval,
        dtype=dtype, depth=depth, range_policy=range_policy, alpha=alpha, keep=True,
    )  # fmt: skip
    if squeeze:
        result = replace(
            result, **{k: getattr(result, k)[:, :, 0] for k in ("conv", "corr", "flip", "diff")}
        )
    return result


@dataclass(frozen=True)
class Strip:
    """One strip's results, as :func:`compare_samples` hands them to ``visit``."""

    start: int  #: its first row in the image
    #: the input's unit-scale values (straight colour); None when ``shown`` has its bytes
    source: NDArray[np.float32] | None
    conv: NDArray[np.floating]  #: the raw results (premultiplied colour with alpha)
    corr: NDArray[np.floating]
    flip: NDArray[np.floating]
    #: conv - corr, computed with the difference kernel (its magnitude, the very array
    #: ``abs_diff``, when the results are not kept: a visitor needs only that)
    diff: NDArray[np.floating]
    #: for ``rescale``, the whole results' colour bounds by name ("conv", "corr", "flip")
    bounds: dict[str, tuple[float, float] | None]
    policy: str | None = None  #: the range policy the results were written with
    #: 8-bit written samples by name ("conv", "corr", "flip", "input"), when at hand
    shown: dict[str, NDArray | None] | None = None
    abs_diff: NDArray[np.floating] | None = None  #: |diff|, when at hand
    abs_flip: NDArray[np.floating] | None = None  #: |conv - flip| (None: flip is conv)

    @property
    def stop(self) -> int:
        return self.start + self.conv.shape[0]


def _window(height: int, start: int, stop: int, reach: tuple[int, int], mode: str):
    """The :class:`~convcli.pipeline.strips.Window` of output rows ``[start, stop)`` for
    kernels applied side by side (exact on the direct backend: the rows it keeps read only
    rows inside it or the image's edges)."""
    from .pipeline.strips import Window

    above, below = reach
    if mode == "wrap":
        index = np.arange(start - above, stop + below) % height
        return Window(start, stop, index.astype(np.intp), above)
    lo, hi = max(0, start - above), min(height, stop + below)
    return Window(start, stop, slice(lo, hi), start - lo)


def written_samples(
    values: NDArray[np.floating],
    policy: str,
    depth: str,
    alpha: str | None,
    stretch: tuple[float, float] | None = None,
) -> NDArray:
    """A raw result (rows of it) as ``convcli apply`` writes it: ``(H, W, C)`` uint8/uint16
    samples (float32 for ``float`` depth, unmapped).  Colour mapped by ``policy`` (``clip``
    is the rounding's own clipping), alpha (``alpha`` names how it was filtered) clipped
    to [0, 1] after un-premultiplying; rounded from the arithmetic's precision."""
    from .image_io import to_depth
    from .process import apply_range

    arr = _hwc(values)
    colour, a = (arr, None) if alpha is None else straight(arr, alpha, depth)
    if depth != "float" and policy != "clip":
        colour = apply_range(colour, policy, depth, stretch=stretch)[0]
    out = colour if a is None else np.concatenate([colour, a.astype(colour.dtype)], axis=2)
    if depth == "float":
        return np.ascontiguousarray(out, np.float32)
    return to_depth(np.ascontiguousarray(out), depth)  # type: ignore[arg-type]


def _differing(a: NDArray, b: NDArray) -> tuple[int, int]:
    """Pixels of two written sample arrays that differ in any channel, and the sum of the
    squared sample differences (exact integers, in any order)."""
    if a is b:
        return 0, 0
    x = np.bitwise_xor(a, b)
    seen = x[:, :, 0].copy()
    for c in range(1, x.shape[2]):
        seen |= x[:, :, c]
    count = int(np.count_nonzero(seen))
    if count == 0:
        return 0, 0
    d = np.subtract(a, b, dtype=np.int16 if a.dtype == np.uint8 else np.int32).reshape(-1)
    return count, int(np.einsum("i,i->", d, d, dtype=np.int64))


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
    visit: Callable[[Strip], None] | None = None,
    keep: bool = False,
    save: Callable[[int, dict[str, NDArray]], None] | None = None,
    raw: bool = False,
) -> Comparison:
    """:func:`compare` of an image's stored samples, strip by strip, in memory that does not
    grow with the image (unless ``keep``: then ``conv``, ``corr``, ``flip`` and ``diff`` are
    assembled whole; else they are None).

    Each strip's window (with the halo every kernel needs) is converted in the arithmetic's
    precision (float64 samples are ``k / 255`` in float64, not a float32 value widened),
    premultiplied, filtered and measured while it is in cache:

    * ``conv = correlate(I, rot180 K)`` (how convcli convolves), ``corr = correlate(I, K)``
      and ``flip = correlate(I, rot180 K)`` once more, on the chosen backend;
    * ``diff = conv - corr`` computed directly as ``correlate(I, rot180 K - K)`` (the
      difference kernel, about the origin: :meth:`Kernel.flip_difference`), and
      ``conv + corr`` as ``correlate(I, rot180 K + K)``.  Both are linear in the kernel, so
      they carry no cancellation: for a symmetric kernel the difference kernel is zero and
      ``diff`` is exactly 0.  They decide the verdict, with a rounding bound on their own
      weights, and run on the backend ``auto`` picks for those kernels whatever ``backend``
      says, so the verdict never depends on it.

    ``rescale`` takes a first pass for the results' bounds.  ``visit(strip)``, if given, sees
    every :class:`Strip` (from the worker threads, each once); if it has ``crop_rows()``,
    that is asked after the pass for rows ``(y0, y1)`` (or None) to compute again and hand
    to its ``crop(strip)`` (a panel's loupe).  ``save(start, results)``, if given, gets each
    strip's results in row order, from this thread: by name (``convolve``, ``correlate``,
    ``correlate-rot180``) the written samples (``raw``: the raw float32 results).
    """
    from .backends import direct, fft
    from .backends.auto import direct_method
    from .errors import FilterError, UsageError
    from .filtering import _all_finite, _compute_dtype, plan_filter
    from .image_io import unit_float
    from .pipeline.engine import in_order
    from .pipeline.strips import parallel_reach, strip_windows, window_rows

    if alpha not in ALPHA_MODES:
        raise UsageError(f"alpha mode must be one of {', '.join(ALPHA_MODES)}, got '{alpha}'")
    dt = _compute_dtype(dtype)
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

    height, width = stored.height, stored.width
    shape = (height, width, stored.channels)
    top = {"8": 255.0, "16": 65535.0}.get(stored.depth)

    def unit(raw: NDArray) -> NDArray[np.floating]:
        if top is None:  # float samples: a copy (premultiplied in place below)
            return np.array(raw, dt)
        if dt == np.float32:
            return unit_float(raw, stored.depth)
        return np.divide(raw, top, dtype=np.float64)

    def values_of(rows: slice | NDArray[np.intp], cols=None) -> NDArray[np.floating]:
        raw = stored.samples[rows]
        values = unit(raw if cols is None else np.ascontiguousarray(raw[:, cols]))
        if alpha_mode == "premultiply":  # in the arithmetic's precision, as apply does
            values[..., :-1] *= values[..., -1:]
        return values

    block = 1024
    retain = getattr(stored.samples, "retain", None)
    # the rounding bounds scale with max(1, max |I|): 8/16-bit values lie in [0, 1]
    finite, peak = True, 1.0
    if top is None:  # float samples: their largest magnitude, and NaN/Inf (FFT cannot)
        if retain is not None:
            retain(2 * block)
        for y in range(0, height, block):
            part = np.asarray(stored.samples[y : y + block])
            peak = max(peak, float(np.abs(part).max()))
            finite = finite and _all_finite(part)
        rewind()

    def planned(k: Kernel, wanted: str) -> Plan:
        p = plan_filter(shape, k, backend=wanted, dtype=dt)
        if p.backend == "fft" and not finite:
            if wanted == "fft":
                raise FilterError(
                    "the image holds NaN or infinite values, which the FFT backend would "
                    "spread over the whole image; use the direct backend"
                )
            p = Plan("direct", direct_method(k), "image holds NaN/Inf: direct keeps them "
                     "local (fft would spread them everywhere)", p.estimate_ms)  # fmt: skip
        return p

    def bound(k: Kernel | None, p: Plan | None) -> float:  # rounding of correlate(I, k)
        if k is None or p is None:
            return 0.0
        return rounding_bound(np.array([peak]), k, p.backend, str(dt))

    plan = planned(kernel, backend)
    dk, sk = kernel.flip_difference(1.0), kernel.flip_difference(-1.0)
    dplan = planned(dk, "auto") if dk is not None else None
    splan = planned(sk, "auto") if sk is not None else None
    policy = range_policy or default_display_policy(kernel)
    rotated = kernel.rotated()
    same = rotated == kernel  # then correlate(I, K) is the very computation of conv

    def doubles(k: Kernel | None) -> bool:  # k == 2 rot180 K, weights and origin
        return k is not None and k.shape == rotated.shape and k.origin == rotated.origin and (
            bool(np.array_equal(k.weights, 2.0 * rotated.weights))
        )  # fmt: skip

    dk_doubles, sk_doubles = doubles(dk), doubles(sk)
    used = [rotated, kernel] + [k for k in (dk, sk) if k is not None]
    reach = parallel_reach(used, "correlate")
    uses_fft = any(p is not None and p.backend == "fft" for p in (plan, dplan, splan))
    if strip_rows is None:
        row_bytes = width * stored.channels * dt.itemsize
        target = (64 << 20) if uses_fft else (2 << 20)
        strip_rows = max(target // max(row_bytes, 1), 4 * (reach[0] + reach[1]))
    strip_rows = max(_BLOCK_ROWS, -(-strip_rows // _BLOCK_ROWS) * _BLOCK_ROWS)  # whole bands
    windows = strip_windows(height, strip_rows, reach, mode)
    n_workers = 1 if uses_fft else (workers or direct.filter_threads())
    if retain is not None:  # the rows of every window that can be in flight at once
        retain((2 * n_workers + 2) * max(window_rows(w) for w in windows))

    def correlate(values: NDArray, k: Kernel, p: Plan, keep: slice) -> NDArray:
        if k.shape == (1, 1):  # one tap: a product, exact (sum kernels of emboss-like K)
            return values[keep] * dt.type(k.weights[0, 0])
        if p.backend == "fft":
            return fft.correlate(values, k, mode, cval)[keep]
        threads = 1 if n_workers > 1 else None
        return direct.correlate(values, k, mode, cval, threads=threads,
                                band=(keep.start, keep.stop))[keep]  # fmt: skip

    def results(w, cols=None) -> tuple[NDArray, NDArray, NDArray, NDArray | None, float]:
        """The strip's results (``cols``: of these columns only, a window of them with
        their own halo: the loupe)."""
        values = values_of(w.rows, cols)
        keep = slice(w.offset, w.offset + w.height)
        conv = correlate(values, rotated, plan, keep)  # convolve(I, K) = correlate(I, rot180 K)
        corr = conv if same else correlate(values, kernel, plan, keep)
        # correlate(I, rot180 K) computed another way, to check conv by: the image turned
        # instead of the kernel, rot180(correlate(rot180 I, K)) (every boundary mode is
        # symmetric under the turn; the halo both sides covers both kernels' reach).  The
        # samples are turned as one flat run, which also reverses the channels' order:
        # harmless, channels are filtered apart, and turning back restores it.
        n = values.shape[0]
        turned = values.reshape(-1)[::-1].reshape(values.shape).copy()
        back = slice(n - keep.stop, n - keep.start)
        flip = correlate(turned, kernel, plan, back).reshape(-1)[::-1].reshape(conv.shape).copy()
        # a difference kernel that is 2 rot180 K (antisymmetric) or the sum kernel 2 K
        # (symmetric) gives exactly 2 conv: doubling is exact in floating point
        diff = (None if dk is None else 2 * conv if dk_doubles
                else correlate(values, dk, dplan, keep))  # type: ignore[arg-type]  # fmt: skip
        return conv, corr, flip, diff, sum_extent(values, keep, conv)

    def extent(a: NDArray) -> float:
        return max(float(a.max()), -float(a.min())) if a.size else 0.0

    def sum_extent(values: NDArray, keep: slice, conv: NDArray) -> float:
        """max |conv + corr|, as max |correlate(I, rot180 K + K)| (no array when it is 0,
        2 conv, or one tap: doubling and one product are exact, and keep the maximum)."""
        if sk is None:
            return 0.0
        if sk_doubles:
            return 2.0 * extent(conv)
        if sk.shape == (1, 1):
            part = values[keep]  # 8/16-bit values are >= 0: the largest is the largest |v|
            top_v = float(part.max()) if top is not None and part.size else extent(part)
            return abs(float(dt.type(sk.weights[0, 0]))) * top_v
        return extent(correlate(values, sk, splan, keep))  # type: ignore[arg-type]

    def run(job: Callable) -> Iterator:
        return in_order(job, windows, n_workers)

    names = ("conv", "corr", "flip")
    stretch: dict[str, tuple[float, float] | None] = dict.fromkeys(names)
    found_bounds = stretch
    needs_bounds = visit is not None or (save is not None and not raw) or keep
    if policy == "rescale" and (depth != "float" or needs_bounds):

        def bounds(w):
            return [_colour_bounds(r, alpha_mode, depth) for r in results(w)[:3]]

        found = [(math.inf, -math.inf)] * 3
        for strip in run(bounds):
            found = [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(found, strip, strict=True)]
        found_bounds = dict(zip(names, found, strict=True))
        if depth != "float":  # the written values are stretched by them
            stretch = found_bounds
        rewind()
    fast = alpha_mode is None and depth in _DEPTH_MAX  # written samples compared as integers
    tol = bound(kernel, plan)
    tol_diff, tol_sum = bound(dk, dplan), bound(sk, splan)
    generic = None
    if not fast:  # alpha (visible composites) or float output: the band accumulators
        generic = tuple(
            _DiffAccumulator(depth, policy, alpha_mode, tol, 1.0, (stretch["conv"], stretch[o]))
            for o in ("corr", "flip")
        )
    # per-row float64 sums, each row's added alone: the same bits for any strip height
    row_sums = {key: np.zeros(height) for key in ("diff", "flip")}
    kept = {key: np.empty(shape, dt) for key in (*names, "diff")} if keep else None

    def row_sum(magnitudes: NDArray | None, start: int, key: str) -> float:
        """Add each row's sum of ``magnitudes`` (|values|) into ``row_sums``, as float64 sums
        of whole rows (the same bits for any strip height); return the largest."""
        if magnitudes is None or magnitudes.size == 0:
            return 0.0
        flat = magnitudes.reshape(magnitudes.shape[0], -1)
        row_sums[key][start : start + magnitudes.shape[0]] = np.add.reduce(
            flat, axis=1, dtype=np.float64
        )
        return float(flat.max())

    def measure(w):
        conv, corr, flip, diff, total = results(w)
        if kept is not None:
            rows = slice(w.start, w.stop)
            kept["conv"][rows], kept["corr"][rows], kept["flip"][rows] = conv, corr, flip
            kept["diff"][rows] = 0.0 if diff is None else diff
        # |diff| in place unless the signed values are kept (the visitor needs only |diff|)
        abs_diff = None if diff is None else np.abs(diff, out=diff if kept is None else None)
        abs_flip = None
        if flip is not conv:
            abs_flip = np.subtract(conv, flip)
            np.abs(abs_flip, out=abs_flip)
        part = {
            "start": w.start,
            "diff_max": row_sum(abs_diff, w.start, "diff"),
            "total_max": total,
            "flip_max": row_sum(abs_flip, w.start, "flip"),
        }
        written = None
        if fast:
            wc = written_samples(conv, policy, depth, None, stretch["conv"])
            wr = wc if corr is conv else written_samples(corr, policy, depth, None, stretch["corr"])
            wf = wc if flip is conv else written_samples(flip, policy, depth, None,
                                                          stretch["flip"])  # fmt: skip
            part["corr"], part["flip"] = _differing(wc, wr), _differing(wc, wf)
            if part["flip"][0] == 0:  # the same written samples: one array
                wf = wc
            written = {"convolve": wc, "correlate": wr, "correlate-rot180": wf}
        else:
            bands = []
            for y in range(0, conv.shape[0], _BLOCK_ROWS):
                rows = slice(y, y + _BLOCK_ROWS)
                c64 = np.asarray(conv[rows], np.float64)
                seen = generic[0].seen(c64, 0)  # shared by both pairs
                bands.append((generic[0].parts(c64, corr[rows], seen),
                              generic[1].parts(c64, flip[rows], seen)))  # fmt: skip
            part["bands"] = bands
        if visit is not None:
            raw_rows = stored.samples[w.start : w.stop]
            shown = None
            if fast and depth == "8":  # the display bytes are the written ones
                shown = {"conv": wc, "corr": wr, "flip": wf,
                         "input": raw_rows if stored.depth == "8" else None}  # fmt: skip
            source = None if shown is not None and shown["input"] is not None else unit_float(
                raw_rows, stored.depth
            )  # fmt: skip
            zero = np.zeros_like(conv) if diff is None else diff
            visit(Strip(w.start, source, conv, corr, flip, zero, found_bounds, policy, shown,
                        abs_diff, abs_flip))  # fmt: skip
        if save is not None:
            if raw:
                written = {"convolve": conv, "correlate": corr, "correlate-rot180": flip}
            elif written is None:
                written = {
                    name: written_samples(r, policy, depth, alpha_mode, stretch[key])
                    for name, key, r in (("convolve", "conv", conv), ("correlate", "corr", corr),
                                         ("correlate-rot180", "flip", flip))
                }  # fmt: skip
            part["written"] = written
        return part

    maxima = dict.fromkeys(("diff_max", "total_max", "flip_max"), 0.0)
    counts = {"corr": [0, 0], "flip": [0, 0]}
    for part in run(measure):
        for key in maxima:
            maxima[key] = max(maxima[key], part[key])
        if fast:
            for key in ("corr", "flip"):
                counts[key][0] += part[key][0]
                counts[key][1] += part[key][1]
        else:
            for a, b in part["bands"]:  # in row order: the sums come out as from whole arrays
                generic[0].merge(a)
                generic[1].merge(b)
        if save is not None:
            save(part["start"], part["written"])
    samples = height * width * stored.channels
    pixels = height * width

    def stats(max_abs: float, sum_abs: float, key: str, acc) -> DiffStats:
        if fast:
            count, sum_sq = counts[key]
            top_out = _DEPTH_MAX[depth]
            mse = sum_sq / (top_out * top_out) / samples
            psnr = math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)
        else:
            pooled = acc.result()
            count, psnr = pooled.differing_pixels, pooled.psnr
        percent = 100.0 * count / max(pixels, 1)
        return DiffStats(max_abs, sum_abs / samples if samples else 0.0, count, percent, psnr)

    vs_corr = stats(maxima["diff_max"], float(row_sums["diff"].sum()), "corr",
                    generic[0] if generic else None)  # fmt: skip
    vs_flip = stats(maxima["flip_max"], float(row_sums["flip"].sum()), "flip",
                    generic[1] if generic else None)  # fmt: skip
    vs_neg = Extent(maxima["total_max"])
    result = Comparison(
        kernel=kernel,
        plan=plan,
        mode=mode,
        conv=None if kept is None else kept["conv"],
        corr=None if kept is None else kept["corr"],
        flip=None if kept is None else kept["flip"],
        conv_vs_corr=vs_corr,
        conv_vs_negated_corr=vs_neg,
        conv_vs_flipped_corr=vs_flip,
        tolerance=tol,
        verdict=_verdict(kernel, vs_corr, vs_neg, tol_diff, tol_sum),
        range_policy=policy,
        cval=float(cval),
        precision=str(dt),
        depth=depth,
        alpha=alpha_mode,
        difference_tolerance=tol_diff,
        sum_tolerance=tol_sum,
        difference_plan=dplan,
        diff=None if kept is None else kept["diff"],
        bounds=found_bounds,
    )
    crop_rows = getattr(visit, "crop_rows", None)
    if crop_rows is not None:
        rows = crop_rows(result)
        if rows is not None:
            rewind()
            win = _window(height, rows[0], rows[1], reach, mode)
            if retain is not None:
                retain(window_rows(win) + 2 * block)
            # only the loupe's columns, with a halo as wide as the widest kernel each side
            x, _, w, _ = visit.crop_region  # type: ignore[union-attr]
            side = max(k.shape[1] for k in used)
            cols = _window(width, x, x + w, (side, side), mode)
            conv, corr, flip, diff, _ = results(win, cols.rows)
            inner = slice(cols.offset, cols.offset + w)
            conv, corr, flip = conv[:, inner], corr[:, inner], flip[:, inner]
            diff = np.zeros_like(conv) if diff is None else diff[:, inner]
            source = unit_float(stored.samples[win.start : win.stop][:, x : x + w], stored.depth)
            visit.crop(Strip(win.start, source, conv, corr, flip, diff, found_bounds))  # type: ignore[union-attr]
    return result
