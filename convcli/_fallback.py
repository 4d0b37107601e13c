"""Vectorised NumPy versions of the C extension's functions (``convcli._native``), for an
install without a C compiler.

Same arguments and the same results: ``to_depth``, ``count_outside`` and ``png_unfilter``
to the bit; ``correlate2d`` and ``correlate_separable`` within floating-point rounding (the
sums are formed in another order).  They are several times slower than the C loops (the
direct backend's 2-D path takes one pass over the band per tap), so :mod:`convcli.native`
uses them only when the extension is missing, and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def _padded_rows(
    src: NDArray, rows: NDArray, cols: NDArray, cval: float, first: int, count: int
) -> NDArray:
    """Padded rows ``rows[first : first + count]`` of ``src`` (H, W, C): (count, Wp, C)."""
    r = np.asarray(rows[first : first + count])
    c = np.asarray(cols)
    out = src[np.clip(r, 0, None)][:, np.clip(c, 0, None)]
    if (r < 0).any() or (c < 0).any():
        out[r < 0] = cval
        out[:, c < 0] = cval
    return out


def _views(src: Any, dst: Any, height: int, width: int, channels: int) -> tuple[NDArray, NDArray]:
    s = np.asarray(src).reshape(height, width, channels)
    d = np.asarray(dst).reshape(height, width, channels)
    return s, d


def correlate2d(
    src: Any, dst: Any, height: int, width: int, channels: int, weights: Any, kh: int, kw: int,
    rows: Any, cols: Any, left: int, cval: float, y0: int, y1: int,
) -> None:  # fmt: skip
    """``dst[y] = sum_a sum_b w[a, b] * padded(rows[y + a])[x + b]`` for rows ``[y0, y1)``."""
    s, d = _views(src, dst, height, width, channels)
    w = np.asarray(weights).reshape(kh, kw)
    if y1 <= y0:
        return
    padded = _padded_rows(s, rows, cols, cval, y0, y1 - y0 + kh - 1)
    acc = np.zeros((y1 - y0, width, channels), dtype=s.dtype)
    for a in range(kh):
        for b in range(kw):
            if w[a, b] != 0:
                acc += w[a, b] * padded[a : a + y1 - y0, b : b + width]
    d[y0:y1] = acc


def correlate_separable(
    src: Any, dst: Any, height: int, width: int, channels: int, kv: Any, kh: int, kr: Any,
    kw: int, rows: Any, cols: Any, left: int, cval: float, y0: int, y1: int,
) -> None:  # fmt: skip
    """The rank-1 kernel ``outer(kv, kr)``: a vertical pass, then a horizontal one."""
    s, d = _views(src, dst, height, width, channels)
    if y1 <= y0:
        return
    v = np.asarray(kv).reshape(kh)
    h = np.asarray(kr).reshape(kw)
    padded = _padded_rows(s, rows, cols, cval, y0, y1 - y0 + kh - 1)
    vertical = np.zeros((y1 - y0, padded.shape[1], channels), dtype=s.dtype)
    for a in range(kh):
        vertical += v[a] * padded[a : a + y1 - y0]
    acc = np.zeros((y1 - y0, width, channels), dtype=s.dtype)
    for b in range(kw):
        acc += h[b] * vertical[:, b : b + width]
    d[y0:y1] = acc


def to_depth(src: Any, dst: Any, top: float, kind: int) -> None:
    """``dst = rint(clip(src * top, 0, top))`` in double (half to even), NaN to 0."""
    values = np.asarray(src).astype(np.float64) * top
    np.nan_to_num(values, copy=False, nan=0.0)
    np.clip(values, 0.0, top, out=values)
    out = np.asarray(dst)
    out[...] = np.rint(values).astype(out.dtype)


def count_outside(src: Any, kind: int, below: float, above: float) -> tuple[int, int]:
    """How many values are ``< below`` and ``> above`` (NaN is neither)."""
    values = np.asarray(src)
    return int(np.count_nonzero(values < below)), int(np.count_nonzero(values > above))


def png_unfilter(raw: Any, out: Any, height: int, stride: int, bpp: int) -> None:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth) of ``height`` rows of
    ``stride`` bytes (each stored after its filter-type byte) into ``out``."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if height < 0 or stride <= 0 or bpp <= 0 or data.size < height * (stride + 1):
        raise ValueError("PNG data shorter than its header says")
    rows = data[: height * (stride + 1)].reshape(height, stride + 1)
    dst = np.asarray(out).reshape(-1)[: height * stride].reshape(height, stride)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        ftype = int(rows[y, 0])
        f = rows[y, 1:].astype(np.int32)
        if ftype == 0:
            cur = f
        elif ftype == 2:
            cur = (f + prev) & 0xFF
        elif ftype == 1:  # Sub: a running sum along each byte lane, modulo 256
            cur = np.empty(stride, dtype=np.int32)
            for x0 in range(bpp):
                cur[x0::bpp] = np.cumsum(f[x0::bpp]) & 0xFF
        elif ftype in (3, 4):  # Average, Paeth: each byte needs the one bpp before it
            cur = np.zeros(stride, dtype=np.int32)
            b, fl = prev.tolist(), f.tolist()
            out_row = [0] * stride
            for x in range(stride):
                a = out_row[x - bpp] if x >= bpp else 0
                if ftype == 3:
                    v = fl[x] + ((a + b[x]) >> 1)
                else:
                    v = fl[x] + _paeth(a, b[x], b[x - bpp] if x >= bpp else 0)
                out_row[x] = v & 0xFF
            cur[:] = out_row
        else:
            raise ValueError(f"invalid PNG filter type {ftype}")
        dst[y] = cur
        prev = cur


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c
