"""The proof: convolution vs correlation of one image with one kernel, measured.

:func:`compare` computes, with the same backend and boundary,

* ``conv = convolve(I, K)``,
* ``corr = correlate(I, K)``,
* ``flip = correlate(I, rot180(K))``, which must equal ``conv`` for every kernel,

and measures ``conv - corr`` and ``conv - flip``.  The verdict:

* ``EQUAL``: ``conv == corr`` within the rounding bound (point-symmetric kernels);
* ``NEGATED``: ``conv == -corr`` within the bound (antisymmetric kernels);
* ``DIFFERENT``: neither; then ``conv == flip`` shows that the flip explains it all.

The rounding bound is derived from the computation, not guessed: float32
arithmetic over ``sum |K|`` times the largest input magnitude, looser for the
FFT backend (whose error spreads over the whole transform).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .filtering import Plan, filter_array
from .kernels import Kernel, Symmetry

VERDICTS: tuple[str, ...] = ("equal", "negated", "different")

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
    """How two results differ."""

    max_abs: float  #: largest absolute difference, in image units ([0, 1] for integer images)
    mean_abs: float  #: mean absolute difference
    differing_pixels: int  #: pixels whose quantized value differs in any channel
    differing_percent: float  #: the same, as a percentage of all pixels
    psnr: float  #: peak signal-to-noise ratio in dB over a peak of 1 (inf when identical)


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`."""

    kernel: Kernel
    plan: Plan
    mode: str
    conv: NDArray[np.floating]
    corr: NDArray[np.floating]
    flip: NDArray[np.floating]
    conv_vs_corr: DiffStats
    conv_vs_negated_corr: DiffStats
    conv_vs_flipped_corr: DiffStats
    tolerance: float  #: the rounding bound used for "equal"
    verdict: str  #: "equal", "negated" or "different"
    range_policy: str = "clip"  #: how results were mapped to the output depth

    def to_dict(self) -> dict[str, object]:
        """The stable machine-readable fields (``convcli compare --json``)."""
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
        if self.verdict == "equal":
            if k.symmetry is Symmetry.SYMMETRIC:
                why = "the kernel is point-symmetric (K == rot180 K), so flipping changes nothing"
            else:
                why = "the two results agree on this image although the kernel is not symmetric"
            return (
                f"EQUAL - {why}: max |diff| {self.conv_vs_corr.max_abs:.3g} "
                f"(bound {self.tolerance:.2g})"
            )
        if self.verdict == "negated":
            return (
                "NEGATED - the kernel is antisymmetric (K == -rot180 K): convolution = "
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


def diff_stats(
    a: NDArray[np.floating], b: NDArray[np.floating], depth: str, policy: str = "clip"
) -> DiffStats:
    """Difference statistics of two results of the same shape ``(H, W[, C])``.

    A pixel "differs" when any channel's value in the output ``depth``, after the
    range ``policy`` (as ``convcli apply`` would write it), differs.
    """
    from .process import apply_range

    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    mean_abs = float(diff.mean()) if diff.size else 0.0
    if depth in _DEPTH_MAX:
        top = _DEPTH_MAX[depth]
        qa = np.rint(apply_range(np.asarray(a, np.float64), policy, depth)[0] * top)
        qb = np.rint(apply_range(np.asarray(b, np.float64), policy, depth)[0] * top)
        differs = qa != qb
    else:
        differs = diff > 0
    if differs.ndim == 3:
        differs = differs.any(axis=2)
    count = int(np.count_nonzero(differs))
    pixels = differs.size
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    psnr = math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)
    return DiffStats(max_abs, mean_abs, count, 100.0 * count / max(pixels, 1), psnr)


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
) -> Comparison:
    """Convolve and correlate ``image`` with ``kernel`` and measure how they differ.

    ``depth`` ("8", "16" or "float") and ``range_policy`` (default: ``offset``
    for zero-sum kernels, else ``clip``) decide what "a pixel differs" means:
    its value as written into that depth, or any difference for float.

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
    conv, plan = filter_array(
        image, kernel, op="convolve", mode=mode, cval=cval, backend=backend, dtype=dtype
    )
    # the same backend for all three, so the comparison isolates the operation
    chosen = plan.backend
    corr, _ = filter_array(
        image, kernel, op="correlate", mode=mode, cval=cval, backend=chosen, dtype=dtype
    )
    flip, _ = filter_array(
        image, kernel.rotated(), op="correlate", mode=mode, cval=cval, backend=chosen,
        dtype=dtype,
    )  # fmt: skip
    arr = np.asarray(image, dtype=np.float64)
    tol = rounding_bound(arr, kernel, chosen, dtype)
    policy = range_policy or default_display_policy(kernel)
    vs_corr = diff_stats(conv, corr, depth, policy)
    vs_neg = diff_stats(conv, -corr, "float")
    vs_flip = diff_stats(conv, flip, depth, policy)
    if vs_corr.max_abs <= tol:
        verdict = "equal"
    elif vs_neg.max_abs <= tol:
        verdict = "negated"
    else:
        verdict = "different"
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
    )
