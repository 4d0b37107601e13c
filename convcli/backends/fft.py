"""The ``fft`` backend: correlation by the convolution theorem, with exact borders.

The image is cut into horizontal strips that overlap by the kernel's height - 1
rows.  For every (channel, strip) pair, a buffer of a fast transform length
(``scipy.fft.next_fast_len``) is filled with the strip extended by the boundary
mode (the same index maps as the direct backend, so the borders match), real
FFT, multiplied by the transform of the 180-degree-rotated kernel, transformed
back, and the valid rows are kept.  The buffer is at least as long as the
valid part needs, so circular wrap-around never reaches the kept samples: the
result equals direct correlation to floating-point rounding.

The jobs run on the thread pool, one per core at a time, each with a
single-threaded transform: smaller transforms stay in cache, and the filling,
multiplying and cropping around them run in parallel too.  Peak memory is the
input and output plus about three transform buffers per core.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..kernels import Kernel
from .borders import index_map, pad_widths
from .direct import executor, filter_threads

#: Fewest strips an image is cut into (the project's machines have 2 cores).
MIN_STRIPS = 2


def next_fast_len(n: int) -> int:
    """The smallest ``2^a 3^b 5^c 7^d 11^e >= n``: ``scipy.fft.next_fast_len(n, real=False)``
    (pocketfft's ``good_size_cmplx``), without importing scipy.fft (130 ms at start-up) for
    the cost model alone."""
    if n <= 12:
        return max(n, 1)
    best = 2 * n
    f11 = 1
    while f11 < best:
        f117 = f11
        while f117 < best:
            f1175 = f117
            while f1175 < best:
                x = f1175
                while x < n:
                    x *= 2
                while True:
                    if x < n:
                        x *= 3
                    elif x > n:
                        best = min(best, x)
                        if x & 1:
                            break
                        x >>= 1
                    else:
                        return n
                f1175 *= 5
            f117 *= 7
        f11 *= 11
    return best


def transform_work(image_shape: tuple[int, ...], kernel_shape: tuple[int, int]) -> tuple[int, int]:
    """``(number of transforms, points in each)`` the FFT backend will compute."""
    channels = image_shape[2] if len(image_shape) > 2 else 1
    rows, (fh, fw) = strip_plan(image_shape[0], image_shape[1], kernel_shape)
    strips = -(-image_shape[0] // rows)
    return channels * strips, fh * fw


def strip_plan(
    height: int, width: int, kernel_shape: tuple[int, int]
) -> tuple[int, tuple[int, int]]:
    """``(rows per strip, transform shape)`` for an image cut into horizontal strips.

    Strips make the transforms smaller (more cache-friendly) and independent, so
    each core can transform its own strip with all the work around it (filling,
    multiplying, cropping) in parallel too.  Each strip overlaps the next by the
    kernel's height - 1 rows, so strips are kept at least about 4 kernel heights
    tall; there are at least :data:`MIN_STRIPS` and at most 8.  The plan depends on
    the image and kernel only, never on the number of threads, so the result is
    the same to the bit however many threads compute it (a batch's workers get
    fewer threads than a single run).
    """
    kh, kw = kernel_shape
    strips = max(MIN_STRIPS, min(8, height // max(4 * kh, 64)))
    strips = max(1, min(strips, height))
    rows = -(-height // strips)
    return rows, (
        next_fast_len(rows + kh - 1),
        next_fast_len(width + kw - 1),  # 7 and 11 are fast here too
    )


def kernel_spectrum(
    weights: NDArray[np.floating], shape: tuple[int, int], workers: int
) -> NDArray[np.complexfloating]:
    """``rfft2(weights, s=shape)``, transforming only the kernel's own rows along the width."""
    import scipy.fft  # here, not at import: start-up is 130 ms faster when fft does not run

    rows = scipy.fft.rfft(weights, n=shape[1], axis=1, workers=workers)
    return scipy.fft.fft(rows, n=shape[0], axis=0, workers=workers, overwrite_x=True)


def correlate(
    image: NDArray[np.floating],
    kernel: Kernel,
    mode: str,
    cval: float,
    *,
    workers: int | None = None,
) -> NDArray[np.floating]:
    """Correlate a ``(H, W, C)`` float32/float64 image with ``kernel`` by FFT.

    The image is cut into horizontal strips (:func:`strip_plan`); every
    (channel, strip) pair is one job on the thread pool: fill a buffer of the
    transform's size with the strip and its border extension, real FFT,
    multiply by the kernel's spectrum, inverse FFT, crop the valid rows.
    """
    import scipy.fft

    height, width, channels = image.shape
    dtype = image.dtype
    kh, kw = kernel.shape
    cores = workers if workers is not None else filter_threads()
    rows_per_strip, shape = strip_plan(height, width, kernel.shape)
    strips = -(-height // rows_per_strip)
    fh, fw = shape
    (top, _), (left, _) = pad_widths(kernel.shape, kernel.origin)
    flipped = np.ascontiguousarray(kernel.weights[::-1, ::-1], dtype=dtype)
    kernel_f = kernel_spectrum(flipped, shape, cores)
    # source row of every padded row any strip reads (-1: cval), and the same for columns
    row_map = index_map(height, top, (strips - 1) * rows_per_strip + fh - height - top, mode)
    col_map = index_map(width, left, fw - width - left, mode)
    out = np.empty_like(image)

    def job(c: int, strip: int) -> None:
        y0 = strip * rows_per_strip
        y1 = min(height, y0 + rows_per_strip)
        need = row_map[y0 : y0 + fh]
        buf = np.empty(shape, dtype=dtype)
        middle = buf[:, left : left + width]
        if mode == "constant":
            inside = need >= 0
            middle[inside] = image[need[inside], :, c]
            middle[~inside] = cval
            buf[:, :left] = cval
            buf[:, left + width :] = cval
        else:
            middle[:] = image[need, :, c]
            if left:
                buf[:, :left] = middle[:, col_map[:left]]
            if left + width < fw:
                buf[:, left + width :] = middle[:, col_map[left + width :]]
        spectrum = scipy.fft.rfft2(buf, workers=1)
        del buf, middle
        spectrum *= kernel_f
        full = scipy.fft.irfft2(spectrum, s=shape, workers=1, overwrite_x=True)
        out[y0:y1, :, c] = full[kh - 1 : kh - 1 + (y1 - y0), kw - 1 : kw - 1 + width]

    jobs = [(c, t) for c in range(channels) for t in range(strips)]
    if cores <= 1 or len(jobs) == 1:
        for c, t in jobs:
            job(c, t)
        return out
    pool = executor()
    futures = [pool.submit(job, c, t) for c, t in jobs]
    for future in futures:
        future.result()
    return out
