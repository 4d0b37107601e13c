"""Boundary modes: names, aliases, and the index maps that implement them.

Every backend extends the image the same way, through :func:`numpy.pad`, so
they agree at the borders by construction.  For an input row ``a b c d``:

========== ========================= ====================================================
mode       extension                 also known as
========== ========================= ====================================================
reflect    ``d c b a | a b c d | d c b a``  symmetric (numpy.pad), half-sample symmetric,
                                     BORDER_REFLECT (OpenCV), grid-mirror
constant   ``k k k k | a b c d | k k k k``  zero, fill, BORDER_CONSTANT; ``k`` is ``cval``
nearest    ``a a a a | a b c d | d d d d``  edge (numpy.pad), replicate, clamp,
                                     BORDER_REPLICATE
mirror     ``d c b | a b c d | c b a``      reflect101, reflect_101 (OpenCV's default
                                     BORDER_REFLECT_101), reflect (numpy.pad)
wrap       ``a b c d | a b c d | a b c d``  periodic, tile, circular, grid-wrap,
                                     BORDER_WRAP
========== ========================= ====================================================

The primary names are those of ``scipy.ndimage``.  Note that ``reflect``
means different things in numpy.pad and scipy.ndimage; convcli follows scipy.
Kernels larger than the image keep extending by the same rule (numpy.pad's).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import UsageError

#: The five boundary modes, primary names.
BOUNDARY_MODES: tuple[str, ...] = ("reflect", "constant", "nearest", "mirror", "wrap")

#: Other tools' names for the same modes.
MODE_ALIASES: dict[str, str] = {
    "symmetric": "reflect",
    "half-symmetric": "reflect",
    "grid-mirror": "reflect",
    "zero": "constant",
    "zeros": "constant",
    "fill": "constant",
    "grid-constant": "constant",
    "edge": "nearest",
    "replicate": "nearest",
    "clamp": "nearest",
    "reflect101": "mirror",
    "reflect_101": "mirror",
    "reflect-101": "mirror",
    "periodic": "wrap",
    "tile": "wrap",
    "circular": "wrap",
    "grid-wrap": "wrap",
}

#: OpenCV's border constants (``cv2.BORDER_REFLECT`` or ``BORDER_REFLECT``, any case).
OPENCV_MODES: dict[str, str] = {
    "border_reflect": "reflect",
    "border_constant": "constant",
    "border_replicate": "nearest",
    "border_reflect_101": "mirror",
    "border_reflect101": "mirror",
    "border_default": "mirror",  # OpenCV's default is BORDER_REFLECT_101
    "border_wrap": "wrap",
}

#: numpy.pad's name for each mode.
_NP_PAD_MODE = {
    "reflect": "symmetric",
    "constant": "constant",
    "nearest": "edge",
    "mirror": "reflect",
    "wrap": "wrap",
}


def normalize_mode(mode: str) -> str:
    """Return the primary name of a boundary mode, accepting aliases (case-insensitive).

    >>> normalize_mode("replicate")
    'nearest'
    """
    key = str(mode).strip().lower()
    if key in BOUNDARY_MODES:
        return key
    if key in MODE_ALIASES:
        return MODE_ALIASES[key]
    opencv = key.removeprefix("cv2.").removeprefix("cv.")
    if opencv in OPENCV_MODES:
        return OPENCV_MODES[opencv]
    aliases = ", ".join(sorted(MODE_ALIASES))
    raise UsageError(
        f"boundary mode must be one of {', '.join(BOUNDARY_MODES)} "
        f"(or an alias: {aliases}; or OpenCV's BORDER_* names), got '{mode}'"
    )


def pad_widths(
    kernel_shape: tuple[int, int], origin: tuple[int, int]
) -> tuple[tuple[int, int], ...]:
    """``((top, bottom), (left, right))`` extension needed to correlate with a kernel."""
    (kh, kw), (orow, ocol) = kernel_shape, origin
    return ((orow, kh - 1 - orow), (ocol, kw - 1 - ocol))


def index_map(n: int, before: int, after: int, mode: str) -> NDArray[np.int64]:
    """Source index of each padded position along one axis; ``-1`` marks ``cval``.

    >>> index_map(4, 2, 2, "reflect").tolist()
    [1, 0, 0, 1, 2, 3, 3, 2]
    """
    idx = np.arange(n, dtype=np.int64)
    if mode == "constant":
        return np.pad(idx, (before, after), mode="constant", constant_values=-1)
    return np.pad(idx, (before, after), mode=_NP_PAD_MODE[mode])  # type: ignore[call-overload]


def pad_plane(
    plane: NDArray[np.floating], widths: tuple[tuple[int, int], ...], mode: str, cval: float
) -> NDArray[np.floating]:
    """Extend a 2-D (or 3-D, channels last and not padded) array by ``mode``."""
    full = tuple(widths) + ((0, 0),) * (plane.ndim - len(widths))
    if mode == "constant":
        return np.pad(plane, full, mode="constant", constant_values=cval)
    return np.pad(plane, full, mode=_NP_PAD_MODE[mode])  # type: ignore[call-overload]
