"""Filtering backends: ``direct`` (spatial, C, separable fast path), ``fft`` and ``auto``.

Every backend computes the same thing, *correlation* of a C-contiguous
``(H, W, C)`` float array with a :class:`~convcli.kernels.Kernel`, with the
borders extended by one of the modes of :mod:`convcli.backends.borders`.
Convolution is correlation with the rotated kernel, done in
:mod:`convcli.filtering`.
"""

from .auto import Plan, choose_backend
from .borders import BOUNDARY_MODES, normalize_mode

__all__ = ["BOUNDARY_MODES", "Plan", "choose_backend", "normalize_mode"]
