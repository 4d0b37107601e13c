"""The strip engine: stored samples in, output samples out, one strip at a time.

Each strip's window of stored samples (uint8, uint16 or float32, see
:mod:`convcli.pipeline.strips`) goes through every step while it is small:
to float, premultiply alpha, every kernel, un-premultiply, the range policy,
rounding to the output depth.  No full-size float copy of the image exists.
Strips run on all cores (one thread each for the direct backend; the FFT
backend spreads each strip over the cores itself); results come out in order.
On the :func:`fused` path (direct float32, 8/16-bit in and out, clipped, no
alpha) those steps are done inside each kernel's C pass instead: stored samples
in, output samples out, the same bits.

The steps are those of :func:`convcli.process.filter_image` and
:func:`convcli.process.edge_image` applied to a strip (every one of them works
sample by sample once the kernels have run), so on the direct backend the
output is the same to the bit as the whole-image path's.  ``--range rescale``
needs the whole result's minimum and maximum before any sample is written: it
takes two passes over the strips (the first computes only the bounds), so
memory stays bounded at the price of filtering twice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import native
from ..backends import direct, fft
from ..backends.auto import Plan, direct_method
from ..errors import FilterError, UsageError
from ..filtering import _all_finite, plan_filter
from ..image_io import SAMPLE_TYPES, Samples, to_depth, unit_float
from ..kernels import Kernel
from ..process import (
    _HALF_STEP,
    ALPHA_MODES,
    DEPTHS,
    EDGE_GAIN_BINS,
    NONFINITE_POLICIES,
    RANGE_POLICIES,
    FilterOptions,
    FilterReport,
    StepReport,
    _check,
    add_bias,
    add_offset,
    apply_range,
    check_kernel_gain,
    count_nonfinite,
    edge_gain,
    edge_histogram,
    edge_operator_kernels,
    edge_top,
    flatten,
    prepare_kernels,
    resolve_edge_gain,
    split_alpha,
)
from .strips import Window, chain_reach, parallel_reach, strip_windows, window_rows

#: Float bytes of one strip's window on the direct backend: small enough to stay in cache
#: while every step runs over it, large enough that the halo costs little.
DIRECT_WINDOW_BYTES = 4 << 20
#: The same for the FFT backend, whose per-strip transforms want tall strips.
FFT_WINDOW_BYTES = 64 << 20
#: Stored bytes of one strip's window on the fused path (see :func:`fused_strip_rows`),
#: samples in memory (a window is a view of them) and from a row reader (which holds every
#: window in flight: PNG to PNG 3x3 at 12 MP peaked at 67 MiB with 1 MiB, 104 with 4).
FUSED_WINDOW_BYTES = 4 << 20
FUSED_READER_WINDOW_BYTES = 1 << 20


def executor() -> ThreadPoolExecutor:
    """The thread pool strips and encoder blocks run on: the direct backend's (one thread per
    core).  Safe to share: no job on it waits for another job (a strip on a pool thread
    filters on that thread alone, and FFT programs run their strips from the caller)."""
    return direct.executor()


def in_order(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> Iterator[Any]:
    """``fn(item)`` for every item, in order: on the strip pool with at most ``2 * workers``
    in flight (``workers`` 1: in this thread).  When the caller stops early or a job fails,
    the jobs not started are cancelled and the running ones waited for."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    pool = executor()
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        for f in pending:
            if not f.cancelled():
                f.exception()  # wait: no job outlives the caller


@dataclass(frozen=True)
class Program:
    """What the engine computes from an image's stored samples."""

    kernels: tuple[Kernel, ...]  #: as applied (normalized if asked)
    plans: tuple[Plan, ...]
    #: "chain": the kernels in turn; "gradient": hypot of the two kernels' results
    kind: str
    op: str
    mode: str
    cval: float
    dtype: np.dtype
    #: "premultiply", "plain", or "passthrough" (alpha is not filtered: edge operators)
    alpha: str
    policy: str
    depth: str
    bands: str  #: output bands (the input's)
    zero_nonfinite: bool = False  #: replace NaN/Inf input samples by 0 (``--nan zero``)
    bias: float = 0.0  #: added to the colour results, 0..1 scale (``--bias``)
    #: flatten alpha onto this colour (``--background``); ``bands`` then has no alpha
    background: tuple[float, float, float] | None = None
    #: edge operators: the magnitude's gain, or (``edge_auto``) a first pass finds it from
    #: a histogram over [0, ``edge_top``]; ``abs_first``: |response| before ``rescale``
    edge_gain: float = 1.0
    edge_auto: bool = False
    edge_top: float = 0.0
    abs_first: bool = False

    @property
    def reach(self) -> tuple[int, int]:
        if self.kind == "gradient":
            return parallel_reach(self.kernels, self.op)
        return chain_reach(self.kernels, self.op)

    @property
    def uses_fft(self) -> bool:
        return any(p.backend == "fft" for p in self.plans)


def _parts(stored: Samples, rows: int = 1024) -> Iterator[NDArray]:
    """The stored samples in bands of rows (one array if they are in memory)."""
    if isinstance(stored.samples, np.ndarray):
        yield stored.samples
        return
    for start in range(0, stored.height, rows):
        yield stored.samples[start : start + rows]


def _plans(
    stored: Samples,
    kernels: Sequence[Kernel],
    options: FilterOptions,
    channels: int,
    finite: bool | None = None,
) -> tuple[Plan, ...]:
    """The plan of each kernel on the whole image (``finite``: known already, or None)."""
    shape = (stored.height, stored.width, channels)
    plans = []
    for k in kernels:
        plan = plan_filter(shape, k, backend=options.backend, dtype=options.dtype)
        if plan.backend == "fft":
            if finite is None:  # NaN/Inf samples to be replaced by 0 count as finite
                finite = (
                    stored.depth != "float"
                    or options.nonfinite == "zero"
                    or all(_all_finite(part) for part in _parts(stored))
                )
            if not finite:
                if options.backend == "fft":
                    raise FilterError(
                        "the image holds NaN or infinite values, which the FFT backend would "
                        "spread over the whole image; use the direct backend"
                    )
                plan = Plan(
                    "direct",
                    direct_method(k),
                    "image holds NaN/Inf: direct keeps them local (fft would spread them "
                    "everywhere)",
                    plan.estimate_ms,
                )
        plans.append(plan)
    return tuple(plans)


def plan_program(
    stored: Samples,
    kernels: Sequence[Kernel] | None,
    options: FilterOptions = FilterOptions(),
    *,
    edge: str | None = None,
    sigma: float = 1.4,
) -> Program:
    """Check the options and plan the work for ``stored``: the kernels in turn (as
    :func:`~convcli.process.filter_image`), or an edge operator (as
    :func:`~convcli.process.edge_image`)."""
    depth = _check("depth", options.depth or stored.depth, DEPTHS)
    alpha_mode = _check("alpha mode", options.alpha, ALPHA_MODES)
    dtype = np.dtype(_check("precision", options.dtype, ("float32", "float64")))
    has_alpha = stored.has_alpha
    colour_channels = stored.channels - (1 if has_alpha else 0)
    if edge is not None:
        ks = edge_operator_kernels(edge, sigma)
        kind = "gradient" if len(ks) == 2 else "chain"
        default = "abs" if kind == "chain" else ("none" if depth == "float" else "clip")
        policy = _check("range policy", options.range_policy or default, RANGE_POLICIES)
        alpha = "passthrough"
        channels = colour_channels
        edge_auto = options.edge_gain == "auto" and options.range_policy is None
        if not edge_auto:
            edge = resolve_edge_gain(options, ks, kind == "gradient")[0]
        edge_fields = dict(
            edge_gain=1.0 if edge_auto else edge,
            edge_auto=edge_auto,
            edge_top=edge_top(ks, kind == "gradient"),
            abs_first=kind == "chain" and policy == "rescale",
        )
    else:
        ks = tuple(prepare_kernels(kernels or (), options.normalize))
        kind = "chain"
        policy = _check(
            "range policy",
            options.range_policy or ("none" if depth == "float" else "clip"),
            RANGE_POLICIES,
        )
        alpha = alpha_mode
        channels = stored.channels
        edge_fields = {}
    if policy == "none" and depth != "float":
        raise UsageError("range policy 'none' is only for float output (--depth float)")
    nonfinite = _check("NaN policy", options.nonfinite, NONFINITE_POLICIES)
    finite: bool | None = True if stored.depth != "float" else None
    if stored.depth == "float":
        count = sum(count_nonfinite(part) for part in _parts(stored))
        if count and nonfinite == "refuse":
            raise FilterError(
                f"{count:,} of the image's samples are NaN or infinite; --nan zero replaces "
                "them by 0"
            )
        if count:
            options = replace(options, nonfinite="zero")
        else:
            options = replace(options, nonfinite="refuse")  # nothing to replace
        finite = True  # as filtered: no NaN/Inf left
    check_kernel_gain(
        ks if kind == "chain" else ks[:1],
        dtype,
        lambda: (
            max(
                float(np.abs(np.nan_to_num(part, nan=0.0, posinf=0.0, neginf=0.0)).max())
                for part in _parts(stored)
            )
            if stored.depth == "float"
            else 1.0
        ),
    )
    flat = options.background is not None and has_alpha
    return Program(
        kernels=tuple(ks),
        plans=_plans(stored, ks, options, channels, finite),
        kind=kind,
        op=options.op,
        mode=options.mode,
        cval=float(options.cval),
        dtype=dtype,
        alpha=alpha,
        policy=policy,
        depth=depth,
        bands=stored.bands[:-1] if flat else stored.bands,
        zero_nonfinite=options.nonfinite == "zero",
        bias=float(options.bias),
        background=options.background if flat else None,
        **edge_fields,  # type: ignore[arg-type]
    )


def default_strip_rows(program: Program, width: int, channels: int) -> int:
    """Rows per strip: a window of about :data:`DIRECT_WINDOW_BYTES` (FFT: more), and at
    least four times the halo so that recomputed halo rows stay a small share."""
    target = FFT_WINDOW_BYTES if program.uses_fft else DIRECT_WINDOW_BYTES
    row_bytes = max(1, width * channels * program.dtype.itemsize)
    above, below = program.reach
    return max(8, target // row_bytes, 4 * (above + below))


def fused(program: Program, stored: Samples) -> bool:
    """Whether the strips take the fused path: each kernel one pass of
    :func:`convcli.backends.direct.correlate_samples` (stored samples in, the last one's
    results rounded as they are stored), with no float copy of a strip's input or output.
    For direct float32 arithmetic on a chain, 8/16-bit in, clipped to 8/16-bit out, no
    alpha: the values are those of the general steps, bit for bit."""
    return (
        native.AVAILABLE  # (the NumPy fallback has no fused pass)
        and program.kind == "chain"
        and len(program.kernels) > 0
        and not any(k.offset for k in program.kernels)
        and not program.bias
        and program.background is None
        and all(plan.backend == "direct" for plan in program.plans)
        and program.dtype == np.float32
        and stored.depth in ("8", "16")
        and not stored.has_alpha
        and program.policy == "clip"
        and program.depth in ("8", "16")
    )


def fused_strip_rows(program: Program, stored: Samples, workers: int) -> int:
    """Rows per strip on the fused path.  Its working set is a few rows per thread whatever
    the strip's height (a chain's inner kernels excepted), so strips are cut for few Python
    calls (about :data:`FUSED_WINDOW_BYTES` of stored samples each, or
    :data:`FUSED_READER_WINDOW_BYTES` from a row reader) and for balance (at least four per
    worker), and tall enough that a chain's halo stays a small share."""
    itemsize = np.dtype(SAMPLE_TYPES[stored.depth]).itemsize
    row_bytes = max(1, stored.width * stored.channels * itemsize)
    if len(program.kernels) > 1:  # the inner kernels write a float window
        return default_strip_rows(program, stored.width, stored.channels)
    above, below = program.reach
    balanced = -(-stored.height // (4 * max(1, workers)))
    in_memory = isinstance(stored.samples, np.ndarray)
    target = FUSED_WINDOW_BYTES if in_memory else FUSED_READER_WINDOW_BYTES
    return max(8, min(target // row_bytes, balanced), 4 * (above + below))


@dataclass
class _StripResult:
    samples: NDArray | None  #: output samples (None in the bounds pass)
    value_min: float
    value_max: float
    out_of_range: int = 0
    colour_samples: int = 0
    seconds: list[float] = field(default_factory=list)  #: per kernel
    histogram: NDArray | None = None  #: edge magnitudes (the automatic gain's first pass)


class Stream:
    """The output of a :class:`Program` over stored samples: iterate for the output strips
    (``(rows, width, channels)`` of uint8, uint16 or float32, top to bottom); after the
    last one, :attr:`report` is complete."""

    def __init__(
        self,
        stored: Samples,
        program: Program,
        *,
        strip_rows: int | None = None,
        workers: int | None = None,
    ) -> None:
        if getattr(stored.samples, "sequential", False) and program.mode == "wrap":
            # wrap joins the last rows to the first: a reader that goes front to back once
            # cannot give them, so the stored samples are decoded whole (uint8/uint16)
            reader = stored.samples
            stored = replace(stored, samples=reader[0 : stored.height])
            reader.close()
        self.stored = stored
        self.program = program
        self.height, self.width = stored.height, stored.width
        self.bands = program.bands
        self.channels = len(program.bands)
        self.depth = program.depth
        self.dtype = np.dtype(SAMPLE_TYPES[program.depth])
        #: the kernels read the stored samples and write the output samples themselves
        self.fused = fused(program, stored)
        self.strip_rows = strip_rows or (
            fused_strip_rows(program, stored, direct.filter_threads())
            if self.fused
            else default_strip_rows(program, self.width, self.channels)
        )
        self.windows = strip_windows(self.height, self.strip_rows, program.reach, program.mode)
        retain = getattr(stored.samples, "retain", None)
        if retain is not None:  # the rows of every window that can be in flight at once
            span = max(window_rows(w) for w in self.windows)
            retain((2 * direct.available_cores() + 2) * span)
        # the FFT backend spreads one strip over the cores itself
        self.workers = 1 if program.uses_fft else (workers or direct.filter_threads())
        self.report = FilterReport(range_policy=program.policy, depth=program.depth)
        self.edge_gain = program.edge_gain  #: (the automatic one is found by the first pass)
        self.report.edge_gain = program.edge_gain
        self.report.steps = [
            StepReport(k, p, 0.0) for k, p in zip(program.kernels, program.plans, strict=True)
        ]
        self.seconds = 0.0  #: wall time spent computing strips
        self._target: NDArray | None = None  #: where collect() has the strips written

    # -- one strip -------------------------------------------------------------------------

    def _filter(
        self, values: NDArray, kernel: Kernel, plan: Plan, band: tuple[int, int] | None = None
    ) -> NDArray:
        """One kernel over a window; ``band``: the only rows wanted (direct computes just
        those: the halo rows of the last kernel are never used)."""
        p = self.program
        eff = kernel.rotated() if p.op == "convolve" else kernel
        if plan.backend == "fft":
            return fft.correlate(values, eff, p.mode, p.cval)
        threads = 1 if self.workers > 1 else None
        return direct.correlate(values, eff, p.mode, p.cval, threads=threads, band=band)

    def _fused_strip(self, window: Window) -> _StripResult:
        """A strip on the :attr:`fused` path: each kernel a single C pass over the window,
        the last one straight into the output rows (``collect``'s array, or a new one)."""
        p = self.program
        values = np.ascontiguousarray(self.stored.samples[window.rows])
        keep = (window.offset, window.offset + window.height)
        target = None if self._target is None else self._target[window.start : window.stop]
        half = _HALF_STEP[p.depth]
        seconds = []
        last = len(p.kernels) - 1
        for i, k in enumerate(p.kernels):
            t0 = time.perf_counter()
            eff = k.rotated() if p.op == "convolve" else k
            if i < last:
                values, _ = direct.correlate_samples(values, eff, p.mode, p.cval)
            else:
                values, (lo, hi, below, above, nan) = direct.correlate_samples(
                    values, eff, p.mode, p.cval, band=keep, out=target, out_dtype=self.dtype,
                    outside=(-half, 1 + half),
                )  # fmt: skip
            seconds.append(time.perf_counter() - t0)
        if nan:  # as numpy's min and max; NaN is never out of range
            lo = hi = float("nan")
            below = above = 0
        return _StripResult(values, lo, hi, below + above, int(values.size), seconds)

    def _strip(self, window: Window, stretch: tuple[float, float] | None, bounds_only: bool):
        p = self.program
        if self.fused and not bounds_only:
            return self._fused_strip(window)
        raw = self.stored.samples[window.rows]
        if self.stored.depth == "float":  # a copy: the steps below work in place
            values = np.array(raw, dtype=np.float32)
            if p.zero_nonfinite:
                np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            values = unit_float(raw, self.stored.depth)
        if p.dtype != np.float32:
            values = values.astype(p.dtype)
        alpha_in = None
        if p.alpha == "passthrough" and self.stored.has_alpha:
            alpha_in = values[window.offset : window.offset + window.height, :, -1:]
            values = np.ascontiguousarray(values[..., :-1])
        elif p.alpha == "premultiply" and self.stored.has_alpha:
            values[..., :-1] *= values[..., -1:]
        seconds = []
        keep = slice(window.offset, window.offset + window.height)
        if p.kind == "gradient":
            parts = []
            for k, plan in zip(p.kernels, p.plans, strict=True):
                t0 = time.perf_counter()
                part = self._filter(values, k, plan, (keep.start, keep.stop))[keep]
                parts.append(np.ascontiguousarray(part, dtype=np.float32))
                seconds.append(time.perf_counter() - t0)
            colour: NDArray = np.hypot(parts[0], parts[1])
            alpha = None
        else:
            last = len(p.kernels) - 1
            for i, (k, plan) in enumerate(zip(p.kernels, p.plans, strict=True)):
                t0 = time.perf_counter()
                band = (keep.start, keep.stop) if i == last else None
                values = self._filter(values, k, plan, band)
                if i == last:  # (the rows outside the band were never computed)
                    values = values[keep]
                add_offset(values, k, self.stored.depth, self.stored.has_alpha, p.alpha)
                seconds.append(time.perf_counter() - t0)
            if p.alpha != "passthrough" and self.stored.has_alpha:
                colour, alpha = split_alpha(values, p.alpha, p.depth)
            else:
                colour, alpha = values, None
            if p.abs_first:  # edge |response| stretched by rescale, as the default shows it
                colour = np.abs(colour)
        if p.edge_auto and bounds_only:  # the automatic edge gain's first pass
            return _StripResult(None, 0.0, 0.0, seconds=seconds,
                                histogram=edge_histogram(colour, p.edge_top))  # fmt: skip
        if self.edge_gain != 1.0:
            colour = colour * np.asarray(self.edge_gain, dtype=colour.dtype)
        add_bias(colour, p.bias)
        if p.policy == "clip" and p.depth != "float":
            # the bounds, and the out-of-range counts in one pass; rounding to the depth clips,
            # which is clip-then-round exactly (the scale by 255 or 65535 is exact)
            colour = np.ascontiguousarray(colour)
            half = _HALF_STEP[p.depth]
            lo, hi = float(colour.min()), float(colour.max())
            result = _StripResult(None, lo, hi, seconds=seconds)
            if bounds_only:
                return result
            outside = 0
            if lo < -half or hi > 1 + half:  # counted only when some value is (a blur: never)
                kind = 0 if colour.dtype == np.float32 else 1
                outside = sum(native.count_outside(colour.reshape(-1), kind, -half, 1 + half))
            mapped, result.out_of_range = colour, outside
        else:
            result = _StripResult(None, float(colour.min()), float(colour.max()), seconds=seconds)
            if bounds_only:
                return result
            mapped, result.out_of_range = apply_range(
                colour,
                p.policy,
                p.depth,
                bounds=(result.value_min, result.value_max),
                stretch=stretch,
            )
        result.colour_samples = int(mapped.size)
        if alpha is None and alpha_in is not None:
            alpha = alpha_in
        if alpha is not None and p.background is not None:
            mapped, alpha = flatten(mapped, alpha, p.background), None
        if alpha is not None:
            mapped = np.concatenate([mapped.astype(np.float32), alpha.astype(np.float32)], axis=-1)
        target = None if self._target is None else self._target[window.start : window.stop]
        out = to_depth(np.ascontiguousarray(mapped, dtype=np.float32), p.depth, out=target)  # type: ignore[arg-type]
        result.samples = out
        return result

    def _run(
        self, stretch: tuple[float, float] | None, bounds_only: bool
    ) -> Iterator[_StripResult]:
        return in_order(lambda w: self._strip(w, stretch, bounds_only), self.windows, self.workers)

    def __iter__(self) -> Iterator[NDArray]:
        t0 = time.perf_counter()
        report = self.report
        stretch = None
        lo, hi = np.inf, -np.inf
        if self.program.edge_auto:  # the edge gain from the magnitudes of the whole image
            histogram = np.zeros(EDGE_GAIN_BINS, np.int64)
            for r in self._run(None, bounds_only=True):
                histogram += r.histogram
            self.edge_gain, report.edge_level = edge_gain(histogram, self.program.edge_top)
            report.edge_gain = self.edge_gain
            rewind = getattr(self.stored.samples, "rewind", None)
            if rewind is not None:
                rewind()
        if self.program.policy == "rescale":
            for r in self._run(None, bounds_only=True):
                lo, hi = min(lo, r.value_min), max(hi, r.value_max)
            stretch = (lo, hi)
            rewind = getattr(self.stored.samples, "rewind", None)
            if rewind is not None:  # a front-to-back reader starts again for the second pass
                rewind()
        lo, hi = np.inf, -np.inf
        for r in self._run(stretch, bounds_only=False):
            lo, hi = min(lo, r.value_min), max(hi, r.value_max)
            report.out_of_range += r.out_of_range
            report.samples += r.colour_samples
            for step, s in zip(report.steps, r.seconds, strict=True):
                step.seconds += s
            assert r.samples is not None
            yield r.samples
        report.value_min, report.value_max = float(lo), float(hi)
        self.seconds = time.perf_counter() - t0

    def collect(self) -> Samples:
        """Every strip in one array: the whole output as :class:`Samples`."""
        out = np.empty((self.height, self.width, self.channels), dtype=self.dtype)
        self._target = out  # every strip is rounded straight into its rows
        try:
            for _ in self:
                pass
        finally:
            self._target = None
        return Samples(out, self.bands, self.depth, replace(self.stored.meta))  # type: ignore[arg-type]


def stream_samples(
    stored: Samples,
    kernels: Sequence[Kernel] | None,
    options: FilterOptions = FilterOptions(),
    *,
    edge: str | None = None,
    sigma: float = 1.4,
    strip_rows: int | None = None,
    workers: int | None = None,
) -> Stream:
    """Plan and return the :class:`Stream` that filters ``stored`` strip by strip."""
    program = plan_program(stored, kernels, options, edge=edge, sigma=sigma)
    return Stream(stored, program, strip_rows=strip_rows, workers=workers)


__all__ = ["Program", "Stream", "plan_program", "stream_samples", "window_rows"]


def filter_samples(
    samples: NDArray,
    kernels: Sequence[Kernel] | None,
    options: FilterOptions = FilterOptions(),
    *,
    bands: str | None = None,
    edge: str | None = None,
    sigma: float = 1.4,
    strip_rows: int | None = None,
    workers: int | None = None,
) -> NDArray:
    """Filter an in-memory image of stored samples into output samples, strip by strip.

    ``samples``: ``(H, W)`` or ``(H, W, C)`` uint8 (8-bit), uint16 (16-bit) or float32
    (float) values; ``bands`` defaults by channel count (L, LA, RGB, RGBA: the last
    channel of 2 or 4 is alpha).  Returns ``(H, W, C)`` samples of the output depth
    (``options.depth``, default the input's), the same as :func:`convcli.filter_image`
    followed by rounding to that depth, without the image-sized float copies.

    >>> import numpy as np
    >>> from convcli import FilterOptions, builtin_kernel
    >>> img = np.full((4, 4), 100, np.uint8); img[1, 1] = 200
    >>> filter_samples(img, [builtin_kernel("box")])[..., 0].tolist()
    [[111, 111, 111, 100], [111, 111, 111, 100], [111, 111, 111, 100], [100, 100, 100, 100]]
    """
    arr = np.asarray(samples)
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    depth = {np.dtype(np.uint8): "8", np.dtype(np.uint16): "16", np.dtype(np.float32): "float"}
    if arr.ndim != 3 or arr.dtype not in depth or not 1 <= arr.shape[2] <= 4:
        raise UsageError(
            "samples must be (H, W) or (H, W, 1..4) of uint8, uint16 or float32, got "
            f"{arr.shape} {arr.dtype}"
        )
    layout = bands or {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    if len(layout) != arr.shape[2]:
        raise UsageError(f"bands '{layout}' do not match {arr.shape[2]} channels")
    stored = Samples(np.ascontiguousarray(arr), layout, depth[arr.dtype])  # type: ignore[arg-type]
    stream = stream_samples(
        stored, kernels, options, edge=edge, sigma=sigma, strip_rows=strip_rows, workers=workers
    )
    return stream.collect().samples
