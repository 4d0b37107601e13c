"""Convolution and correlation of images with kernels: validation and dispatch.

Definitions (``K`` a kernel with origin ``(o_r, o_c)``, ``I`` the image
extended at its borders by the boundary mode)::

    correlate(I, K)[y, x] = sum_{a,b} K[a, b] * I[y + a - o_r, x + b - o_c]
    convolve(I, K)[y, x]  = sum_{a,b} K[a, b] * I[y - a + o_r, x - b + o_c]

``convolve(I, K)`` is computed as ``correlate(I, K.rotated())`` on every
backend, so the identity holds for every kernel, odd or even, by
construction.  The impulse response of convolution is the kernel as it is
written; that of correlation is the kernel rotated by 180 degrees.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .backends import direct, fft
from .backends.auto import Plan, choose_backend, direct_method
from .backends.borders import BOUNDARY_MODES, normalize_mode
from .errors import FilterError, UsageError
from .kernels import Kernel, as_kernel

Operation = Literal["convolve", "correlate"]
Backend = Literal["auto", "direct", "fft"]

OPERATIONS: tuple[str, ...] = ("convolve", "correlate")
BACKENDS: tuple[str, ...] = ("auto", "direct", "fft")

__all__ = [
    "BACKENDS",
    "BOUNDARY_MODES",
    "OPERATIONS",
    "Plan",
    "convolve",
    "correlate",
    "filter_array",
    "plan_filter",
]


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    key = str(value).strip().lower()
    if key not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}, got '{value}'")
    return key


def _compute_dtype(dtype: DTypeLike) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise UsageError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _as_hwc(image: ArrayLike, dtype: np.dtype) -> tuple[NDArray[np.floating], bool]:
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise FilterError(
            f"image must be 2-D (H, W) or 3-D (H, W, channels), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0 or (arr.ndim == 3 and arr.shape[2] == 0):
        raise FilterError(f"image is empty (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise FilterError(f"image must hold real numbers, got dtype {arr.dtype}")
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[:, :, np.newaxis]
    return np.ascontiguousarray(arr, dtype=dtype), squeeze


def _all_finite(arr: NDArray[np.floating]) -> bool:
    """True when no sample is NaN or infinite.

    A NaN or Inf makes the sum non-finite, so a finite sum (one fast pass, no
    image-sized temporary) settles it; only a non-finite sum, which huge finite
    values could also cause by overflow, is checked sample by sample.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(arr.sum())
    return math.isfinite(total) or bool(np.isfinite(arr).all())


def plan_filter(
    shape: tuple[int, ...],
    kernel: Kernel,
    *,
    backend: str = "auto",
    dtype: DTypeLike = np.float32,
) -> Plan:
    """Which backend and path :func:`filter_array` will use for an image of ``shape``."""
    backend = _check_choice("backend", backend, BACKENDS)
    hwc = (shape[0], shape[1], shape[2] if len(shape) > 2 else 1)
    if backend == "direct":
        return Plan("direct", direct_method(kernel), "direct backend requested", {})
    if backend == "fft":
        return Plan("fft", "fft", "fft backend requested", {})
    return choose_backend(hwc, kernel, float64=_compute_dtype(dtype) == np.float64)


def filter_array(
    image: ArrayLike,
    kernel: Kernel | ArrayLike,
    *,
    op: str = "convolve",
    mode: str = "reflect",
    cval: float = 0.0,
    backend: str = "auto",
    dtype: DTypeLike = np.float32,
) -> tuple[NDArray[np.floating], Plan]:
    """Convolve or correlate, returning the result and the :class:`Plan` that made it.

    See :func:`convolve` for the parameters.
    """
    op = _check_choice("operation", op, OPERATIONS)
    mode = normalize_mode(mode)
    dt = _compute_dtype(dtype)
    k = as_kernel(kernel)
    try:
        cval = float(cval)
    except (TypeError, ValueError):
        raise UsageError(f"cval must be a number, got {cval!r}") from None
    arr, squeeze = _as_hwc(image, dt)
    plan = plan_filter(arr.shape, k, backend=backend, dtype=dt)
    if plan.backend == "fft" and not _all_finite(arr):
        if backend == "fft":
            raise FilterError(
                "the image holds NaN or infinite values, which the FFT backend would spread "
                "over the whole image; use the direct backend"
            )
        plan = Plan(
            "direct",
            direct_method(k),
            "image holds NaN/Inf: direct keeps them local (fft would spread them everywhere)",
            plan.estimate_ms,
        )
    eff = k.rotated() if op == "convolve" else k
    if plan.backend == "fft":
        out = fft.correlate(arr, eff, mode, cval)
    else:
        out = direct.correlate(arr, eff, mode, cval)
    return (out[:, :, 0] if squeeze else out), plan


def correlate(
    image: ArrayLike,
    kernel: Kernel | ArrayLike,
    *,
    mode: str = "reflect",
    cval: float = 0.0,
    backend: str = "auto",
    dtype: DTypeLike = np.float32,
) -> NDArray[np.floating]:
    """Cross-correlate an image with a kernel: ``out[y, x] = sum K[a, b] I[y+a-o_r, x+b-o_c]``.

    Parameters are as for :func:`convolve`.

    Examples
    --------
    >>> import numpy as np
    >>> impulse = np.zeros((5, 5)); impulse[2, 2] = 1
    >>> k = Kernel([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    >>> correlate(impulse, k, backend="direct")[1:4, 1:4].astype(int).tolist()
    [[9, 8, 7], [6, 5, 4], [3, 2, 1]]
    """
    return filter_array(
        image, kernel, op="correlate", mode=mode, cval=cval, backend=backend, dtype=dtype
    )[0]


def convolve(
    image: ArrayLike,
    kernel: Kernel | ArrayLike,
    *,
    mode: str = "reflect",
    cval: float = 0.0,
    backend: str = "auto",
    dtype: DTypeLike = np.float32,
) -> NDArray[np.floating]:
    """Convolve an image with a kernel: ``out[y, x] = sum K[a, b] I[y-a+o_r, x-b+o_c]``.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` or ``(H, W, C)``; every channel is filtered independently.
    kernel : Kernel or array_like
        The kernel; a plain array gets the default origin ``(rows // 2, cols // 2)``.
    mode : str
        Boundary mode: reflect (default), constant, nearest, mirror, wrap, or an
        alias (symmetric, zero, edge, replicate, reflect101, periodic, tile, ...).
    cval : float
        The value outside the image for ``mode="constant"``.
    backend : {"auto", "direct", "fft"}
        ``auto`` picks the faster by a measured cost model.
    dtype : float32 or float64
        Computation and result type.

    Returns
    -------
    ndarray
        Same shape as ``image``, of ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> impulse = np.zeros((5, 5)); impulse[2, 2] = 1
    >>> k = Kernel([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    >>> convolve(impulse, k, backend="fft")[1:4, 1:4].round().astype(int).tolist()
    [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    """
    return filter_array(
        image, kernel, op="convolve", mode=mode, cval=cval, backend=backend, dtype=dtype
    )[0]
