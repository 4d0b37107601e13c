"""The ``direct`` backend: spatial correlation in C, on row bands across cores.

Two code paths, both in :mod:`convcli._native` (``convcli/_csrc``; without a C compiler
:mod:`convcli._fallback`, through :mod:`convcli.native`):

* separable kernels (rank 1, see :attr:`Kernel.factors`) take two 1-D passes
  per output row: vertical straight from the source rows, then horizontal on
  the (padded) result, O(kh + kw) per sample;
* other kernels take every tap, O(kh * kw) per sample, from a ring of
  horizontally padded source rows.

Borders come from index maps (:func:`convcli.backends.borders.index_map`), so
the image is never copied into a padded array.  The C code releases the GIL;
the rows are split into one contiguous band per thread.

:func:`correlate_samples` is the same float32 arithmetic on stored samples
(uint8, uint16), converted a row at a time, with the result rounded to
uint8/uint16 as it is stored: the strip engine's path, with no float copy of
a strip's input or output.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from .. import native as _native  # the C extension, or its NumPy fallback
from ..kernels import Kernel
from .borders import index_map, pad_widths

#: Below this many multiply-adds a single thread is faster than handing out bands.
_MIN_WORK_PER_THREAD = 2_000_000

_pool: ThreadPoolExecutor | None = None
_thread_limit: int | None = None


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def set_thread_limit(limit: int | None) -> None:
    """Let one filter call in this process use at most ``limit`` threads (None: every core).

    For processes that already run in parallel, such as batch workers: two
    workers on two cores filter faster on one thread each than on two each.
    """
    global _thread_limit
    if limit is not None and limit < 1:
        raise ValueError(f"thread limit must be at least 1, got {limit}")
    _thread_limit = limit


def filter_threads() -> int:
    """Threads one filter call uses by default: a thread per core, within the limit."""
    cores = available_cores()
    return min(cores, _thread_limit) if _thread_limit is not None else cores


def executor() -> ThreadPoolExecutor:
    """The process-wide thread pool (one thread per core), created on first use."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=available_cores(), thread_name_prefix="convcli")
    return _pool


def _forget_pool_in_child() -> None:
    # A forked child inherits the pool object but none of its threads: work
    # submitted there would wait forever.  The child makes its own on first use.
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def taps(kernel: Kernel) -> int:
    """Multiply-adds per output sample on the path the kernel takes."""
    rows, cols = kernel.shape
    if kernel.separable:
        return rows + cols
    return int(np.count_nonzero(kernel.weights)) or 1


def correlate(
    image: NDArray[np.floating],
    kernel: Kernel,
    mode: str,
    cval: float,
    *,
    threads: int | None = None,
    band: tuple[int, int] | None = None,
) -> NDArray[np.floating]:
    """Correlate a C-contiguous ``(H, W, C)`` float32/float64 image with ``kernel``.

    ``mode`` must be a primary boundary mode name.  Returns a new array of the
    image's shape and dtype.  ``band``: compute only output rows ``[y0, y1)`` (the
    others are left unset); each row is computed alone, so its values do not change.
    """
    height, width, channels = image.shape
    dtype = image.dtype
    (top, bottom), (left, right) = pad_widths(kernel.shape, kernel.origin)
    rows = index_map(height, top, bottom, mode)
    cols = index_map(width, left, right, mode)
    out = np.empty_like(image)
    kh, kw = kernel.shape
    factors = kernel.factors
    if factors is not None:
        kv = np.ascontiguousarray(factors[0], dtype=dtype)
        kr = np.ascontiguousarray(factors[1], dtype=dtype)

        def run(y0: int, y1: int) -> None:
            _native.correlate_separable(
                image, out, height, width, channels, kv, kh, kr, kw, rows, cols, left,
                float(cval), y0, y1,
            )  # fmt: skip
    else:
        weights = np.ascontiguousarray(kernel.weights, dtype=dtype)

        def run(y0: int, y1: int) -> None:
            _native.correlate2d(
                image, out, height, width, channels, weights, kh, kw, rows, cols, left,
                float(cval), y0, y1,
            )  # fmt: skip

    first, last = band if band is not None else (0, height)
    if not 0 <= first <= last <= height:
        raise ValueError(f"band {band} is not within the image's {height} rows")
    work = (last - first) * width * channels * taps(kernel)
    n = threads if threads is not None else filter_threads()
    n = max(1, min(n, last - first, work // _MIN_WORK_PER_THREAD or 1))
    if n == 1:
        run(first, last)
        return out
    bounds = np.linspace(first, last, n + 1).round().astype(int)
    futures = [executor().submit(run, int(bounds[i]), int(bounds[i + 1])) for i in range(n)]
    for future in futures:
        future.result()
    return out


@functools.lru_cache(maxsize=64)
def _index_map(n: int, before: int, after: int, mode: str) -> NDArray[np.int64]:
    """:func:`index_map`, read-only, remembered: a stream's strips mostly share theirs."""
    idx = index_map(n, before, after, mode)
    idx.flags.writeable = False
    return idx


#: correlate_io's sample kinds.
_KINDS = {np.dtype(np.float32): 0, np.dtype(np.uint8): 1, np.dtype(np.uint16): 2}


def correlate_samples(
    samples: NDArray,
    kernel: Kernel,
    mode: str,
    cval: float,
    *,
    band: tuple[int, int] | None = None,
    out: NDArray | None = None,
    out_dtype: type | np.dtype = np.float32,
    outside: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[NDArray, tuple[float, float, int, int, int]]:
    """Correlate C-contiguous ``(H, W, C)`` stored samples with ``kernel`` in float32, on
    this thread: the rows ``band`` (default all) of ``correlate(unit_float(samples), ...)``,
    bit for bit, with no float copy of the input.

    ``samples``: uint8 (taken as ``k / 255``), uint16 (``k / 65535``) or float32.  The
    result holds the band's rows only: float32, or (``out_dtype`` uint8/uint16) rounded as
    :func:`convcli.image_io.to_depth` rounds.  ``out``: a C-contiguous array of that shape
    and type to write into.  Returns ``(result, (min, max, n_below, n_above, n_nan))``: for
    a rounded result, the float values' extremes and how many lie below ``outside[0]`` or
    above ``outside[1]``, or are NaN (a float32 result: NaN, NaN, 0, 0, 0).
    """
    if samples.ndim != 3 or samples.dtype not in _KINDS or not samples.flags.c_contiguous:
        raise ValueError(f"samples must be C-contiguous (H, W, C) uint8/uint16/float32, got "
                         f"{samples.shape} {samples.dtype}")  # fmt: skip
    height, width, channels = samples.shape
    first, last = band if band is not None else (0, height)
    if not 0 <= first <= last <= height:
        raise ValueError(f"band {band} is not within the image's {height} rows")
    dtype = np.dtype(out_dtype)
    shape = (last - first, width, channels)
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {shape} {dtype} array")
    if dtype not in _KINDS:
        raise ValueError(f"out_dtype must be float32, uint8 or uint16, got {dtype}")
    (top, bottom), (left, right) = pad_widths(kernel.shape, kernel.origin)
    rows = _index_map(height, top, bottom, mode)
    cols = _index_map(width, left, right, mode)
    kh, kw = kernel.shape
    factors = kernel.factors
    if factors is not None:
        k1 = np.ascontiguousarray(factors[0], dtype=np.float32)
        k2 = np.ascontiguousarray(factors[1], dtype=np.float32)
    else:
        k1, k2 = np.ascontiguousarray(kernel.weights, dtype=np.float32), b""
    stats = _native.correlate_io(
        samples, _KINDS[samples.dtype], out, _KINDS[dtype], height, width, channels, k1, kh,
        k2, kw, rows, cols, left, float(cval), first, last, *map(float, outside),
    )  # fmt: skip
    return out, stats
