"""The ``fft`` backend: correlation by the convolution theorem, with exact borders.

Each channel is extended by the boundary mode with :func:`numpy.pad` (by the
kernel's reach on every side, as the direct backend does), transformed with a
real FFT of a fast length (``scipy.fft.next_fast_len``) on all cores,
multiplied by the transform of the 180-degree-rotated kernel, transformed
back, and the valid part is kept.  Because the padded image is at least as
long as the transform needs for the valid part, circular wrap-around never
reaches the kept samples: the result equals direct correlation, borders
included, to floating-point rounding.

Channels are transformed one at a time (sharing the kernel's transform) to
keep the peak memory near 2x the image instead of 4x; ``scipy.fft``'s workers
already use every core within one channel.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from ..kernels import Kernel
from .borders import index_map, pad_widths
from .direct import available_cores


def transform_shape(image_shape: tuple[int, ...], kernel_shape: tuple[int, int]) -> tuple[int, int]:
    """FFT lengths used for an image and kernel: fast lengths >= padded size."""
    height, width = image_shape[0], image_shape[1]
    kh, kw = kernel_shape
    return (
        scipy.fft.next_fast_len(height + kh - 1, real=False),
        scipy.fft.next_fast_len(width + kw - 1, real=True),
    )


def _fill_extended(
    buf: NDArray[np.floating],
    plane: NDArray[np.floating],
    top: int,
    left: int,
    mode: str,
    cval: float,
) -> None:
    """Write ``plane`` into ``buf`` at ``(top, left)`` and extend it by ``mode`` to all of ``buf``.

    Cheaper than :func:`numpy.pad` (one strided copy plus the border gathers).
    """
    height, width = plane.shape
    fh, fw = buf.shape
    if mode == "constant":
        buf[:top] = cval
        buf[top + height :] = cval
        buf[top : top + height, :left] = cval
        buf[top : top + height, left + width :] = cval
        buf[top : top + height, left : left + width] = plane
        return
    rows = index_map(height, top, fh - height - top, mode)
    cols = index_map(width, left, fw - width - left, mode)
    middle = buf[top : top + height]
    middle[:, left : left + width] = plane
    if left:
        middle[:, :left] = middle[:, left + cols[:left]]
    if left + width < fw:
        middle[:, left + width :] = middle[:, left + cols[left + width :]]
    if top:
        buf[:top] = buf[top + rows[:top]]
    if top + height < fh:
        buf[top + height :] = buf[top + rows[top + height :]]


def kernel_spectrum(
    weights: NDArray[np.floating], shape: tuple[int, int], workers: int
) -> NDArray[np.complexfloating]:
    """``rfft2(weights, s=shape)``, transforming only the kernel's own rows along the width."""
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
    """Correlate a ``(H, W, C)`` float32/float64 image with ``kernel`` by FFT."""
    height, width, channels = image.shape
    dtype = image.dtype
    kh, kw = kernel.shape
    shape = transform_shape(image.shape, kernel.shape)
    nworkers = workers if workers is not None else available_cores()
    (top, _), (left, _) = pad_widths(kernel.shape, kernel.origin)
    flipped = np.ascontiguousarray(kernel.weights[::-1, ::-1], dtype=dtype)
    kernel_f = kernel_spectrum(flipped, shape, nworkers)
    out = np.empty_like(image)
    buf = np.empty(shape, dtype=dtype)
    for c in range(channels):
        # The transform is longer than the extended image needs; whatever lies beyond
        # never reaches the kept (valid) samples, so the extension simply continues.
        _fill_extended(buf, image[:, :, c], top, left, mode, cval)
        spectrum = scipy.fft.rfft2(buf, workers=nworkers)
        spectrum *= kernel_f
        full = scipy.fft.irfft2(spectrum, s=shape, workers=nworkers, overwrite_x=True)
        del spectrum
        out[:, :, c] = full[kh - 1 : kh - 1 + height, kw - 1 : kw - 1 + width]
        del full
    return out
