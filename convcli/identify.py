"""What did another tool compute?  Search the variants of filtering for the one that explains it.

Given an input image ``I``, a kernel ``K`` and an output ``O`` that some other tool made from
them, :func:`identify` tries every variant convcli can compute exactly:

* the operation: ``convolve`` (correlation with ``K`` rotated 180 degrees), ``correlate`` (``K``
  as written), and the one-axis flips: ``convolve-x`` (convolution along x, correlation along
  y: correlation with ``K``'s columns reversed) and ``convolve-y`` (its rows reversed);
* the origin: every position inside the kernel (given in the kernel *as written*, as
  :class:`~convcli.kernels.Kernel` origins are);
* the boundary mode, and for ``constant`` the value outside (0, 1, and a least-squares fit
  rounded to an output level);
* the kernel as given or divided by its sum (some tools normalize);
* signed results clipped, made absolute, or offset by half the range, then clipped;
* rounding to nearest or truncation to the output's levels (8-bit, 16-bit; float outputs are
  compared unrounded).

Predictions are compared with ``O`` in output levels (0..255 for 8-bit, 0..65535 for 16-bit;
float outputs are counted in 8-bit levels), separately in the interior and in the border band
(the pixels within ``max(kh, kw) - 1`` of an edge, which the boundary rule reaches).

The search is staged so that a 12-MP pair takes about a second: (1) the operation, origin,
gain and range policy are scored on a few interior rows, where the boundary plays no part and
an origin is a shift of one filtered array; (2) the best few are filtered with every boundary
mode on a sample of rows that includes the top and bottom bands (each row spans the left and
right bands), with both roundings; (3) the winner is confirmed on the whole image (the
runner-up is measured on the sample).  Images of at most :data:`EXHAUSTIVE_VALUES` samples
are their own sample; those too small for an interior to score skip (1) and try every
operation and origin.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .backends.borders import BOUNDARY_MODES, index_map
from .errors import FilterError, UsageError
from .filtering import filter_array
from .kernels import Kernel

#: The operations searched, by the correlation kernel each one applies.
OPERATIONS: tuple[str, ...] = ("convolve", "correlate", "convolve-x", "convolve-y")
OPERATION_TEXT = {
    "convolve": "convolution: correlation with the kernel rotated 180 degrees (impulse "
    "response: the kernel as written)",
    "correlate": "correlation: the kernel as written (impulse response: the kernel rotated "
    "180 degrees)",
    "convolve-x": "neither: convolution along x, correlation along y (the kernel's columns "
    "reversed; impulse response: the kernel mirrored top-bottom)",
    "convolve-y": "neither: correlation along x, convolution along y (the kernel's rows "
    "reversed; impulse response: the kernel mirrored left-right)",
}
#: Range policies searched for integer outputs (as ``convcli apply --range``).
RANGES: tuple[str, ...] = ("clip", "abs", "offset")
ROUNDINGS: tuple[str, ...] = ("nearest", "truncate")
#: Images of at most this many samples are scored whole (no row sampling).
EXHAUSTIVE_VALUES = 1 << 16
#: Samples scored per candidate in the first stage (interior rows, columns thinned).
STAGE1_VALUES = 1 << 17
#: A prediction "fits" when this share of pixels (interior and border band alike) is
#: within 1 level.
FIT_SHARE = 0.99
_LEVELS = {"8": 255.0, "16": 65535.0, "float": 255.0}
_DIMENSIONS = ("operation", "origin", "boundary", "cval", "normalized", "range", "rounding")


@dataclass(frozen=True)
class Candidate:
    """One way of computing the output; ``origin`` is in the kernel as written."""

    operation: str
    origin: tuple[int, int]
    boundary: str = "reflect"
    cval: float = 0.0
    normalized: bool = False
    range: str = "clip"
    rounding: str = "nearest"

    def describe(self, kernel: Kernel) -> str:
        """One line: ``convolve, origin (1, 1) (default), reflect, clip, nearest``."""
        default = (kernel.shape[0] // 2, kernel.shape[1] // 2)
        origin = f"origin {self.origin}" + (" (default)" if self.origin == default else "")
        border = (
            f"constant (cval {self.cval:.4g})" if self.boundary == "constant" else self.boundary
        )
        parts = [self.operation, origin, border]
        if self.normalized:
            parts.append("kernel normalized")
        parts += [f"range {self.range}", f"rounding {self.rounding}"]
        return ", ".join(parts)


@dataclass(frozen=True)
class Fit:
    """How well a prediction matches the output in one region, in output levels."""

    pixels: int
    max_diff: float
    mean_diff: float
    within_1: float  #: share of pixels whose every channel is within 1 level
    exact: float  #: share of pixels equal in every channel (float output: within 0.001)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pixels": self.pixels,
            "max_diff": round(self.max_diff, 6),
            "mean_diff": round(self.mean_diff, 6),
            "within_1_level": round(self.within_1, 6),
            "exact": round(self.exact, 6),
        }


@dataclass(frozen=True)
class Explanation:
    """A candidate and how well it explains the output, interior and border band apart."""

    candidate: Candidate
    interior: Fit
    border: Fit

    @property
    def fits(self) -> bool:
        return all(r.pixels == 0 or r.within_1 >= FIT_SHARE for r in (self.interior, self.border))

    @property
    def exact(self) -> bool:
        return self.interior.exact == 1.0 and self.border.exact == 1.0

    def to_dict(self, kernel: Kernel) -> dict[str, Any]:
        c = self.candidate
        default = (kernel.shape[0] // 2, kernel.shape[1] // 2)
        return {
            "operation": c.operation,
            "meaning": OPERATION_TEXT[c.operation],
            "origin": list(c.origin),
            "origin_offset": [c.origin[0] - default[0], c.origin[1] - default[1]],
            "boundary": c.boundary,
            "cval": c.cval if c.boundary == "constant" else None,
            "normalized": c.normalized,
            "range": c.range,
            "rounding": c.rounding,
            "interior": self.interior.to_dict(),
            "border": self.border.to_dict(),
            "fits": self.fits,
        }


@dataclass
class Identification:
    """The answer of :func:`identify`."""

    kernel: Kernel
    depth: str  #: the output's
    shape: tuple[int, int, int]
    best: Explanation
    runner_up: Explanation | None
    #: per dimension, every value that explains the sample exactly as well as the best
    #: (e.g. both operations for a point-symmetric kernel)
    equivalent: dict[str, list[Any]]
    #: per operation, the mean level difference of its best variant on the sampled rows
    per_operation: dict[str, float]
    candidates: int  #: how many variants were scored
    sampled_rows: int  #: rows of the sample (the image's height when searched exhaustively)
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``exact``, ``fits`` (>= 99% of pixels within 1 level in both regions) or ``no fit``."""
        if self.best.exact:
            return "exact"
        return "fits" if self.best.fits else "no fit"

    def matches(self, operation: str) -> bool:
        """The output fits and ``operation`` explains it as well as any other."""
        return self.best.fits and operation in self.equivalent["operation"]

    def to_dict(self) -> dict[str, Any]:
        h, w, c = self.shape
        return {
            "verdict": self.verdict,
            "kernel": {
                "name": self.kernel.name,
                "shape": list(self.kernel.shape),
                "weights": self.kernel.weights.tolist(),
                "default_origin": [self.kernel.shape[0] // 2, self.kernel.shape[1] // 2],
            },
            "image": {"width": w, "height": h, "channels": c, "output_depth": self.depth},
            "border_band": border_band(self.kernel),
            "best": self.best.to_dict(self.kernel),
            "equivalent": {
                k: [list(v) if isinstance(v, tuple) else v for v in vals]
                for k, vals in self.equivalent.items()
            },  # fmt: skip
            "runner_up": None if self.runner_up is None else self.runner_up.to_dict(self.kernel),
            "runner_up_differs_in": differences(self.best.candidate, self.runner_up.candidate)
            if self.runner_up is not None
            else [],
            "best_per_operation": {k: round(v, 6) for k, v in self.per_operation.items()},
            "candidates_scored": self.candidates,
            "sampled_rows": self.sampled_rows,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


def differences(a: Candidate, b: Candidate) -> list[str]:
    """The dimensions in which two candidates differ (cval only under constant borders)."""
    out = []
    for dim in _DIMENSIONS:
        if dim == "cval" and not (a.boundary == b.boundary == "constant"):
            continue
        if getattr(a, dim) != getattr(b, dim):
            out.append(dim)
    return out


def border_band(kernel: Kernel) -> int:
    """Width of the border band: the pixels that some origin's window extends past the edge."""
    return max(kernel.shape) - 1


def effective_kernel(kernel: Kernel, operation: str, origin: tuple[int, int]) -> Kernel:
    """The correlation kernel that ``operation`` applies with ``origin`` (as written).

    >>> k = Kernel([[1, 2], [3, 4]])
    >>> effective_kernel(k, "convolve", (0, 0)).weights.tolist(), effective_kernel(
    ...     k, "convolve", (0, 0)).origin
    ([[4.0, 3.0], [2.0, 1.0]], (1, 1))
    """
    w = kernel.weights
    kh, kw = kernel.shape
    r, c = origin
    if operation == "correlate":
        return Kernel(w, origin=(r, c))
    if operation == "convolve":
        return Kernel(w[::-1, ::-1], origin=(kh - 1 - r, kw - 1 - c))
    if operation == "convolve-x":
        return Kernel(w[:, ::-1], origin=(r, kw - 1 - c))
    if operation == "convolve-y":
        return Kernel(w[::-1, :], origin=(kh - 1 - r, c))
    raise UsageError(f"operation must be one of {', '.join(OPERATIONS)}, got '{operation}'")


# -- images ----------------------------------------------------------------------------------


def _colour(values: NDArray[np.floating], bands: str | None) -> NDArray[np.floating]:
    arr = np.asarray(values)
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if bands in ("LA", "RGBA") or (bands is None and arr.shape[2] in (2, 4)):
        arr = arr[..., :-1]
    return arr


def _match_channels(
    src: NDArray[np.floating], obs: NDArray[np.floating], notes: list[str]
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Grey stored as RGB on one side only is taken as grey."""
    if src.shape[2] == obs.shape[2]:
        return src, obs
    for big, name in ((src, "input"), (obs, "output")):
        other = obs if big is src else src
        if (
            other.shape[2] == 1
            and big.shape[2] == 3
            and np.array_equal(big[..., 0], big[..., 1])
            and np.array_equal(big[..., 0], big[..., 2])
        ):
            notes.append(f"the {name} is grey stored as RGB: compared as grey")
            return (big[..., :1], obs) if big is src else (src, big[..., :1])
    raise FilterError(
        f"the input has {src.shape[2]} colour channel(s) and the output {obs.shape[2]}: "
        "identify needs the same channels"
    )


# -- predictions -----------------------------------------------------------------------------


def _filter_rows(
    src: NDArray[np.float64], k: Kernel, mode: str, cval: float, r0: int, r1: int
) -> NDArray[np.float64]:
    """Rows ``r0:r1`` of ``correlate(src, k)`` under ``mode``, from those rows and their halo
    (extended by ``mode`` where they pass the image's top or bottom)."""
    h = src.shape[0]
    if r0 == 0 and r1 == h:
        return filter_array(src, k, op="correlate", mode=mode, cval=cval, dtype=np.float64)[0]
    kh, o = k.shape[0], k.origin[0]
    idx = index_map(h, o, kh - 1 - o, mode)[r0 : r1 + kh - 1]
    strip = src[np.maximum(idx, 0)]
    if mode == "constant":
        strip[idx < 0] = cval
    out = filter_array(strip, k, op="correlate", mode=mode, cval=cval, dtype=np.float64)[0]
    return out[o : o + r1 - r0]


def _map(values: NDArray[np.floating], gain: float, policy: str, top: float) -> NDArray[np.float64]:
    """``values * gain`` (output levels) under a range policy: clipped to [0, top] after
    ``abs`` or adding half the range (``offset``); ``none``: unchanged.  A gain of exactly 1
    (8-bit to 8-bit) multiplies nothing, so integer arithmetic's ties stay exact."""
    v = values * gain if gain != 1.0 else np.asarray(values, dtype=np.float64)
    if policy == "none":
        return v
    if policy == "abs":
        v = np.abs(v)
    elif policy == "offset":
        v = v + top / 2
    return np.clip(v, 0.0, top)


def _levels(scaled: NDArray[np.float64], rounding: str) -> NDArray[np.float64]:
    if rounding == "nearest":
        return np.floor(scaled + 0.5)
    if rounding == "truncate":  # the epsilon keeps exact sums computed as x.9999999 whole
        return np.floor(scaled + 1e-6)
    return scaled


def _gains(kernel: Kernel, gain: float) -> tuple[tuple[bool, float], ...]:
    """(normalized?, factor from filtered source values to output levels) for the kernel as
    given and, when its sum is neither 0 nor 1, divided by its sum."""
    total = kernel.sum
    if abs(total) <= 1e-6 * float(np.abs(kernel.weights).sum()) or abs(total - 1.0) <= 1e-9:
        return ((False, gain),)
    return ((False, gain), (True, gain / total))


# -- the search ------------------------------------------------------------------------------


@dataclass
class _Sample:
    """Rows of the image the second stage scores on, split into border band and the rest."""

    blocks: list[tuple[int, int]]
    border: NDArray[np.bool_]  #: (rows, width): in the border band
    obs_border: NDArray[np.float64]
    obs_inner: NDArray[np.float64]

    @property
    def rows(self) -> int:
        return int(self.border.shape[0])


def _row_blocks(h: int, w: int, c: int, kernel: Kernel) -> tuple[list[tuple[int, int]], list]:
    """(sample blocks, interior blocks for stage 1: no interior blocks means try every
    operation and origin).  Small images are their own sample; their interior, if any, is
    stage 1's."""
    kh, kw = kernel.shape
    edge = max(8, 2 * max(kh, kw))
    inner_h = 8
    margin = 2 * kh
    span = (edge + margin, h - edge - margin - inner_h)
    if (
        h * w * c <= EXHAUSTIVE_VALUES
        or h < 2 * edge + 4 * inner_h
        or w <= 4 * kw + 8
        or span[1] <= span[0]
    ):
        if h - 2 * margin >= 4 and w > 4 * kw + 8:
            return [(0, h)], [(margin, h - margin)]
        return [(0, h)], []
    count = 4
    starts = np.linspace(span[0], span[1], count).round().astype(int)
    inner = sorted({(int(s), int(s) + inner_h) for s in starts})
    # drop overlapping interior blocks (short images)
    kept: list[tuple[int, int]] = []
    for b in inner:
        if not kept or b[0] >= kept[-1][1]:
            kept.append(b)
    blocks = [(0, edge), *kept, (h - edge, h)]
    return blocks, kept


def _make_sample(obs: NDArray[np.float64], blocks: list[tuple[int, int]], band: int) -> _Sample:
    h, w = obs.shape[:2]
    rows = np.concatenate([np.arange(r0, r1) for r0, r1 in blocks])
    border = np.zeros((rows.size, w), dtype=bool)
    border[(rows < band) | (rows >= h - band)] = True
    border[:, :band] = True
    border[:, w - band :] = True
    sampled = obs[rows]
    return _Sample(blocks, border, sampled[border], sampled[~border])


def _stage1(
    src: NDArray[np.float64],
    obs: NDArray[np.float64],
    kernel: Kernel,
    inner: list[tuple[int, int]],
    gains: Sequence[tuple[bool, float]],
    ranges: Sequence[str],
    top: float,
) -> list[tuple[float, str, tuple[int, int], bool, str]]:
    """Interior scores of (operation, origin, gain, range): an origin only shifts the result."""
    kh, kw = kernel.shape
    h, w, c = src.shape
    mr, mc = 2 * kh, 2 * kw
    rows = inner[0][1] - inner[0][0]
    cols = w - 2 * mc
    step = max(1, math.ceil(len(inner) * rows * cols * c / STAGE1_VALUES))
    target = np.stack([obs[r0:r1, mc : w - mc : step] for r0, r1 in inner])
    default = (kh // 2, kw // 2)
    scores = []
    for op in OPERATIONS:
        k = effective_kernel(kernel, op, default)
        filtered = np.stack(
            [
                filter_array(src[r0 - mr : r1 + mr], k, op="correlate", dtype=np.float64)[0]
                for r0, r1 in inner
            ]
        )
        for er in range(kh):
            for ec in range(kw):
                sr, sc = k.origin[0] - er, k.origin[1] - ec
                view = filtered[:, mr + sr : mr + sr + rows, mc + sc : w - mc + sc : step]
                written = _as_written(op, (er, ec), kernel.shape)
                for normalized, gain in gains:
                    for policy in ranges:
                        pred = _map(view, gain, policy, top)
                        score = float(np.abs(pred - target).mean())
                        scores.append((score, op, written, normalized, policy))
    return scores


def _as_written(op: str, eff_origin: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """The as-written origin whose effective origin (under ``op``) is ``eff_origin``."""
    kh, kw = shape
    r, c = eff_origin
    return {
        "correlate": (r, c),
        "convolve": (kh - 1 - r, kw - 1 - c),
        "convolve-x": (r, kw - 1 - c),
        "convolve-y": (kh - 1 - r, c),
    }[op]


def _preference(c: Candidate, kernel: Kernel) -> tuple:
    """Among equally good candidates, the plainest first (convcli's defaults)."""
    default = (kernel.shape[0] // 2, kernel.shape[1] // 2)
    return (
        c.normalized,
        c.origin != default,
        abs(c.origin[0] - default[0]) + abs(c.origin[1] - default[1]),
        (RANGES + ("none",)).index(c.range),
        (ROUNDINGS + ("none",)).index(c.rounding),
        BOUNDARY_MODES.index(c.boundary),
        c.cval != 0.0,
        OPERATIONS.index(c.operation),
    )


def _choose_geometries(
    scores: list[tuple[float, str, tuple[int, int], bool, str]], limit: int = 24
) -> dict[tuple[str, tuple[int, int]], set[tuple[bool, str]]]:
    """The (operation, origin) pairs worth filtering in stage 2, with their (gain, range)s:
    the best per operation, everything tied with the best, and the next best few."""
    ranked = sorted(scores, key=lambda s: s[0])
    best = ranked[0][0]
    chosen: list[tuple[float, str, tuple[int, int], bool, str]] = []
    seen_ops = set()
    for s in ranked:
        if s[1] not in seen_ops:
            seen_ops.add(s[1])
            chosen.append(s)
    chosen += [s for s in ranked if s[0] <= best + 1e-9 * max(1.0, best)][:limit]
    chosen += ranked[:4]
    out: dict[tuple[str, tuple[int, int]], set[tuple[bool, str]]] = {}
    for _score, op, origin, normalized, policy in chosen:
        out.setdefault((op, origin), set()).add((normalized, policy))
    return out


def identify(
    source: Any,
    output: Any,
    kernel: Kernel,
    *,
    output_depth: str | None = None,
) -> Identification:
    """Which variant of filtering ``source`` with ``kernel`` explains ``output`` best.

    ``source`` and ``output``: :class:`~convcli.image_io.Image` objects (values on the 0..1
    scale, as :func:`~convcli.image_io.read_image` gives), or arrays of such values (then
    ``output_depth`` says the output's depth: ``"8"`` by default).  An 8- or 16-bit
    ``source`` image is taken at its exact levels ``k / 255`` (``k / 65535``), the values
    integer arithmetic works on.  Alpha channels are left
    out of the comparison.  Raises :class:`~convcli.errors.FilterError` when the images
    differ in size or channels.

    >>> import numpy as np
    >>> from convcli import Kernel, correlate
    >>> rng = np.random.default_rng(0)
    >>> img = rng.integers(0, 256, (40, 40)) / 255
    >>> k = Kernel([[0, 1, 2], [0, 1, 0], [0, 0, 0]]).scaled(0.25)
    >>> out = np.floor(np.clip(correlate(img, k, mode="wrap", dtype=np.float64), 0, 1)
    ...                * 255 + 0.5) / 255
    >>> found = identify(img, out, k)
    >>> found.verdict, found.best.candidate.operation, found.best.candidate.boundary
    ('exact', 'correlate', 'wrap')
    """
    t0 = time.perf_counter()
    notes: list[str] = []
    depth = output_depth or getattr(output, "depth", None) or "8"
    if depth not in _LEVELS:
        raise UsageError(f"output depth must be 8, 16 or float, got '{depth}'")
    src = _colour(getattr(source, "pixels", source), getattr(source, "bands", None))
    obs = _colour(getattr(output, "pixels", output), getattr(output, "bands", None))
    if getattr(source, "has_alpha", False) or getattr(output, "has_alpha", False):
        notes.append("alpha is left out of the comparison")
    if src.shape[:2] != obs.shape[:2]:
        raise FilterError(
            f"the output is {obs.shape[1]}x{obs.shape[0]} but the input is "
            f"{src.shape[1]}x{src.shape[0]}: identify needs an output of the input's size"
        )
    src, obs = _match_channels(src, obs, notes)
    # an 8/16-bit source is filtered at its exact levels k (float32 holds k / 255 to 1e-8
    # only); ``scale`` is then the value of one source unit on the 0..1 scale
    scale = 1.0
    src = np.asarray(src)
    if src.dtype != np.float64:
        src = src.astype(np.float32)
    if getattr(source, "depth", None) in ("8", "16"):
        scale = 1.0 / _LEVELS[source.depth]
        src = np.rint(src / np.float32(scale))
    src = np.ascontiguousarray(src)
    top = _LEVELS[depth]
    obs = np.asarray(obs, dtype=np.float32) * np.float32(top)
    if depth != "float":
        obs = np.rint(obs)
    if not (np.isfinite(src).all() and np.isfinite(obs).all()):
        raise FilterError("the images hold NaN or infinite values; identify needs finite ones")
    ranges = ("none",) if depth == "float" else RANGES
    roundings = ("none",) if depth == "float" else ROUNDINGS
    exact_tol = 1e-3 if depth == "float" else 0.0
    gains = _gains(kernel, top * scale if scale == 1.0 else top / _LEVELS[source.depth])
    h, w, c = src.shape
    band = border_band(kernel)

    blocks, inner = _row_blocks(h, w, c, kernel)
    candidates = 0
    if inner:
        scores = _stage1(src, obs, kernel, inner, gains, ranges, top)
        candidates += len(scores)
        geometries = _choose_geometries(scores)
    else:
        kh, kw = kernel.shape
        every = {(n, p) for n, _ in gains for p in ranges}
        geometries = {
            (op, (r, q)): every for op in OPERATIONS for r in range(kh) for q in range(kw)
        }
    sample = _make_sample(obs, blocks, band)

    results: list[tuple[float, float, Candidate]] = []  # (mean diff, -exact share, candidate)
    n_border, n_inner = sample.obs_border.shape[0], sample.obs_inner.shape[0]
    n_all = max(n_border + n_inner, 1)
    done: dict[Kernel, dict[str, Any]] = {}
    for (op, origin), variants in geometries.items():
        k = effective_kernel(kernel, op, origin)
        if k not in done:  # else the same correlation kernel as another operation's
            per_mode: dict[str, tuple[NDArray, NDArray | None]] = {}
            for mode in BOUNDARY_MODES:
                f0 = np.concatenate([_filter_rows(src, k, mode, 0.0, r0, r1) for r0, r1 in blocks])
                if mode == "constant":
                    f1 = np.concatenate(
                        [_filter_rows(src, k, mode, 1.0 / scale, r0, r1) for r0, r1 in blocks]
                    )
                    per_mode[mode] = (f0[sample.border], f1[sample.border] - f0[sample.border])
                else:
                    per_mode[mode] = (f0[sample.border], None)
                if mode == "reflect":  # the interior is the same under every mode
                    inner_vals = f0[~sample.border]
            done[k] = {"inner_vals": inner_vals, "modes": per_mode, "inner": {}, "border": {}}
        entry = done[k]
        inner_vals, per_mode = entry["inner_vals"], entry["modes"]
        inner_scores, border_scores = entry["inner"], entry["border"]
        for normalized, policy in variants:
            gain = dict(gains)[normalized]
            for rounding in roundings:
                key = (normalized, policy, rounding)
                if key not in inner_scores:
                    pred = _levels(_map(inner_vals, gain, policy, top), rounding)
                    d = np.abs(pred - sample.obs_inner)
                    inner_scores[key] = (float(d.sum()), _exact_count(d, exact_tol))
                for mode in BOUNDARY_MODES:
                    b0, bdiff = per_mode[mode]
                    cvals = [0.0]
                    if mode == "constant":
                        cvals = _cval_options(
                            b0, bdiff, sample.obs_border, gain, policy, top, rounding
                        )
                    for cval in cvals:
                        bkey = (normalized, policy, rounding, mode, cval)
                        if bkey not in border_scores:
                            vals = b0 if bdiff is None or cval == 0.0 else b0 + cval * bdiff
                            pred = _levels(_map(vals, gain, policy, top), rounding)
                            d = np.abs(pred - sample.obs_border)
                            border_scores[bkey] = (float(d.sum()), _exact_count(d, exact_tol))
                        total = inner_scores[key][0] + border_scores[bkey][0]
                        exact = inner_scores[key][1] + border_scores[bkey][1]
                        cand = Candidate(op, origin, mode, cval if mode == "constant" else 0.0,
                                         normalized, policy, rounding)  # fmt: skip
                        results.append((total / n_all, -exact / n_all, cand))
    candidates += len(results)

    results.sort(key=lambda r: (r[0], r[1], _preference(r[2], kernel)))
    best_score = results[0][:2]
    tied = [r[2] for r in results if _same_score(r[:2], best_score)]
    equivalent = {
        dim: sorted({getattr(t, dim) for t in tied}, key=_sort_key) for dim in _DIMENSIONS
    }
    if "constant" not in equivalent["boundary"]:
        equivalent["cval"] = []
    per_operation: dict[str, float] = {}
    for score, _exact, cand in results:  # sorted: the first of each operation is its best
        per_operation.setdefault(cand.operation, score)
    winner = tied[0]
    runner = next((r[2] for r in results if not _same_score(r[:2], best_score)), None)
    best = _confirm(src, obs, kernel, winner, gains, scale, top, exact_tol)
    second = None  # the runner-up on the sampled rows only
    if runner is not None:
        second = _confirm(src, obs, kernel, runner, gains, scale, top, exact_tol, blocks)
    return Identification(
        kernel, depth, (h, w, c), best, second, equivalent, per_operation, candidates,
        sample.rows, time.perf_counter() - t0, notes,
    )  # fmt: skip


def _sort_key(value: Any) -> Any:
    return (str(type(value)), value)


def _same_score(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return abs(a[0] - b[0]) <= 1e-9 * max(1.0, abs(b[0])) and abs(a[1] - b[1]) <= 1e-12


def _exact_count(diff: NDArray[np.float64], tol: float) -> int:
    return int(np.count_nonzero(_channel_max(diff) <= tol)) if diff.size else 0


def _channel_max(diff: NDArray[np.float64]) -> NDArray[np.float64]:
    """Max over the last (channel) axis: a few element-wise maxima, much faster than
    ``max(axis=-1)`` over an axis of 1 to 3."""
    out = diff[..., 0]
    for ch in range(1, diff.shape[-1]):
        out = np.maximum(out, diff[..., ch])
    return out


def _cval_options(
    b0: NDArray[np.float64],
    bdiff: NDArray[np.float64],
    obs: NDArray[np.float64],
    gain: float,
    policy: str,
    top: float,
    rounding: str,
) -> list[float]:
    """cval 0, 1, and the least-squares value on the border pixels not clipped, rounded to a
    level (and two levels either side): the filtered value is linear in cval
    (``f0 + cval * (f1 - f0)``); under ``abs``, the signs are re-estimated a few times."""
    options = [0.0, 1.0]
    use = (np.abs(bdiff) > 1e-12) & (obs > 0) & (obs < top)
    if not np.count_nonzero(use):
        return options
    b, f0 = bdiff[use], b0[use]
    seen = obs[use] + (0.5 if rounding == "truncate" else 0.0)  # truncation's bias undone
    if policy == "abs":  # |f0 + c b| = t: fit with the signs of the last estimate, in turn
        target = seen / abs(gain)
        fitted = 0.5
        for _ in range(4):
            sign = np.where(f0 + fitted * b < 0, -1.0, 1.0)
            fitted = float(np.dot(sign * b, target - sign * f0) / np.dot(b, b))
    else:
        target = seen / gain
        if policy == "offset":
            target = target - top / 2 / gain
        fitted = float(np.dot(b, target - f0) / np.dot(b, b))
    if math.isfinite(fitted):  # the nearest level, and its neighbours (fit noise)
        level = round(fitted * top)
        for near in range(level - 2, level + 3):
            if near / top not in options:
                options.append(near / top)
    return options


def _confirm(
    src: NDArray[np.float32],
    obs: NDArray[np.float32],
    kernel: Kernel,
    cand: Candidate,
    gains: Sequence[tuple[bool, float]],
    scale: float,
    top: float,
    exact_tol: float,
    blocks: Sequence[tuple[int, int]] | None = None,
    rows: int = 128,
) -> Explanation:
    """The candidate on the rows of ``blocks`` (default: the whole image), in bands of
    ``rows``: interior and border band apart."""
    k = effective_kernel(kernel, cand.operation, cand.origin)
    gain = dict(gains)[cand.normalized]
    h, w, c = src.shape
    band = border_band(kernel)
    inner, everything = _Totals(), _Totals()
    border_worst = 0.0
    for b0, b1 in blocks or [(0, h)]:
        for r0 in range(b0, b1, rows):
            r1 = min(b1, r0 + rows)
            filtered = _filter_rows(src, k, cand.boundary, cand.cval / scale, r0, r1)
            pred = _levels(_map(filtered, gain, cand.range, top), cand.rounding)
            diff = np.abs(pred - obs[r0:r1])
            per_pixel = _channel_max(diff)
            everything.add(diff, per_pixel, exact_tol)
            lo, hi = max(band, r0) - r0, min(h - band, r1) - r0
            if hi > lo and w > 2 * band:
                cols = slice(band, w - band)
                inner.add(diff[lo:hi, cols], per_pixel[lo:hi, cols], exact_tol)
                pieces = [per_pixel[:lo], per_pixel[hi:], per_pixel[lo:hi, :band],
                          per_pixel[lo:hi, w - band :]]  # fmt: skip
            else:
                pieces = [per_pixel]
            border_worst = max([border_worst] + [float(p.max()) for p in pieces if p.size])
    return Explanation(cand, inner.fit(), everything.minus(inner, border_worst).fit())


@dataclass
class _Totals:
    pixels: int = 0
    values: int = 0
    total: float = 0.0
    worst: float = 0.0
    within: int = 0
    exact: int = 0

    def add(
        self, diff: NDArray[np.float64], per_pixel: NDArray[np.float64], exact_tol: float
    ) -> None:
        if not diff.size:
            return
        self.pixels += int(per_pixel.size)
        self.values += int(diff.size)
        self.total += float(diff.sum())
        self.worst = max(self.worst, float(per_pixel.max()))
        self.within += int(np.count_nonzero(per_pixel <= 1.0 + 1e-9))
        self.exact += int(np.count_nonzero(per_pixel <= exact_tol))

    def minus(self, part: _Totals, worst: float) -> _Totals:
        """The totals of the rest, whose worst difference (not subtractable) is ``worst``."""
        return _Totals(
            self.pixels - part.pixels, self.values - part.values, self.total - part.total,
            worst, self.within - part.within, self.exact - part.exact,
        )  # fmt: skip

    def fit(self) -> Fit:
        if not self.pixels:
            return Fit(0, 0.0, 0.0, 1.0, 1.0)
        n = self.pixels
        return Fit(n, self.worst, self.total / self.values, self.within / n, self.exact / n)


def identify_files(
    input_path: str,
    output_path: str,
    kernel_spec: str | Kernel,
    *,
    max_pixels: int | None = None,
) -> Identification:
    """:func:`identify` on two image files and a kernel spec (or :class:`Kernel`); errors
    name the file."""
    from .image_io import read_image
    from .kernel_io import load_kernel

    kernel = load_kernel(kernel_spec) if isinstance(kernel_spec, str) else kernel_spec
    source = read_image(input_path, max_pixels=max_pixels)
    output = read_image(output_path, max_pixels=max_pixels)
    try:
        return identify(source, output, kernel)
    except FilterError as exc:
        raise FilterError(f"{output_path}: {exc}") from None
