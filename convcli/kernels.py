"""Kernels: an immutable weights + origin object, and the built-in named kernels.

A :class:`Kernel` is a 2-D array of float64 weights with an *origin* (the
anchor: the weight that sits over the output pixel in correlation), stored as
``(row, col)`` indices into the weights.  The default origin is
``(rows // 2, cols // 2)``: the centre for odd sizes and, for even sizes, the
element just below/right of the centre, as in ``scipy.ndimage`` and OpenCV.

With that origin, for an image ``I`` and kernel ``K`` (``o`` its origin)::

    correlate(I, K)[y, x] = sum_{a,b} K[a, b] * I[y + a - o_r, x + b - o_c]
    convolve(I, K)[y, x]  = sum_{a,b} K[a, b] * I[y - a + o_r, x - b + o_c]

so ``convolve(I, K) == correlate(I, K.rotated())`` where :meth:`Kernel.rotated`
turns the weights by 180 degrees *and* moves the origin to
``(rows - 1 - o_r, cols - 1 - o_c)``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import KernelError

#: Largest accepted kernel side: 1025 taps (a 1025x1025 kernel is 8 MiB of float64).
MAX_KERNEL_SIDE = 1025

#: Relative tolerance for "equal" weights (symmetry) and for "zero" singular values (rank).
SYMMETRY_RTOL = 1e-9
RANK_RTOL = 1e-9


class Symmetry(str, enum.Enum):
    """Point symmetry of a kernel about its origin."""

    SYMMETRIC = "symmetric"  #: K == rot180(K) about the origin: convolution == correlation
    ANTISYMMETRIC = "antisymmetric"  #: K == -rot180(K): convolution == -correlation
    ASYMMETRIC = "asymmetric"  #: neither: the two operations differ

    def __str__(self) -> str:
        return self.value


def _as_weights(values: ArrayLike) -> NDArray[np.float64]:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise KernelError(f"kernel weights must be numbers: {exc}") from None
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise KernelError(f"a kernel must be 1-D or 2-D, got {arr.ndim} dimensions")
    if arr.size == 0:
        raise KernelError("a kernel must have at least one weight")
    if max(arr.shape) > MAX_KERNEL_SIDE:
        raise KernelError(
            f"kernel of {arr.shape[0]}x{arr.shape[1]} is too large "
            f"(at most {MAX_KERNEL_SIDE} taps a side)"
        )
    if not np.all(np.isfinite(arr)):
        r, c = np.argwhere(~np.isfinite(arr))[0]
        raise KernelError(f"kernel weight at row {r + 1}, column {c + 1} is {arr[r, c]}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Kernel:
    """An immutable 2-D filter kernel: float64 weights, an origin and a name.

    Parameters
    ----------
    weights : array_like
        1-D (taken as one row) or 2-D weights; copied, stored read-only as float64.
    origin : (int, int), optional
        ``(row, col)`` of the anchor inside ``weights``; default ``(rows // 2, cols // 2)``.
    name : str
        Label used in messages and reports.

    Examples
    --------
    >>> k = Kernel([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], name="sobel-y")
    >>> k.shape, k.origin, k.symmetry.value
    ((3, 3), (1, 1), 'antisymmetric')
    >>> k.separable
    True
    """

    weights: NDArray[np.float64]
    origin: tuple[int, int] = field(default=(-1, -1))
    name: str = "custom"

    def __post_init__(self) -> None:
        w = _as_weights(self.weights)
        object.__setattr__(self, "weights", w)
        rows, cols = w.shape
        if self.origin == (-1, -1):
            origin = (rows // 2, cols // 2)
        else:
            try:
                origin = (int(self.origin[0]), int(self.origin[1]))
            except (TypeError, ValueError, IndexError):
                raise KernelError(f"kernel origin must be two integers, got {self.origin!r}") from None
        if not (0 <= origin[0] < rows and 0 <= origin[1] < cols):
            raise KernelError(
                f"kernel origin (row {origin[0]}, col {origin[1]}) lies outside the "
                f"{rows}x{cols} kernel"
            )
        object.__setattr__(self, "origin", origin)

    # -- shape ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the weights."""
        return (int(self.weights.shape[0]), int(self.weights.shape[1]))

    @property
    def size(self) -> int:
        """Number of weights."""
        return int(self.weights.size)

    @property
    def sum(self) -> float:
        """Sum of the weights (1 for a brightness-preserving blur, 0 for an edge detector)."""
        return float(self.weights.sum())

    @property
    def centred(self) -> bool:
        """True when the origin is the geometric centre (odd sizes only)."""
        rows, cols = self.shape
        return 2 * self.origin[0] == rows - 1 and 2 * self.origin[1] == cols - 1

    # -- algebra -------------------------------------------------------------
    def rotated(self) -> Kernel:
        """The kernel turned by 180 degrees, origin moved with it.

        ``convolve(I, K) == correlate(I, K.rotated())`` for every kernel.
        """
        rows, cols = self.shape
        return Kernel(
            self.weights[::-1, ::-1],
            origin=(rows - 1 - self.origin[0], cols - 1 - self.origin[1]),
            name=_rotated_name(self.name),
        )

    def normalized(self) -> Kernel:
        """The kernel divided by its sum; :class:`KernelError` if the sum is (nearly) zero."""
        total = self.sum
        scale = float(np.abs(self.weights).sum())
        if abs(total) <= 1e-6 * scale:
            raise KernelError(
                f"cannot normalize kernel '{self.name}': its weights sum to {total:.3g} "
                "(an edge or derivative kernel); drop --normalize"
            )
        return Kernel(self.weights / total, origin=self.origin, name=self.name)

    def scaled(self, factor: float, offset: float = 0.0) -> Kernel:
        """Weights multiplied by ``factor`` (``offset`` is added to the weights)."""
        return Kernel(self.weights * factor + offset, origin=self.origin, name=self.name)

    def with_origin(self, origin: tuple[int, int]) -> Kernel:
        """The same weights with another origin."""
        return Kernel(self.weights, origin=origin, name=self.name)

    def with_name(self, name: str) -> Kernel:
        """The same kernel under another name."""
        return Kernel(self.weights, origin=self.origin, name=name)

    # -- symmetry ------------------------------------------------------------
    @cached_property
    def symmetry(self) -> Symmetry:
        """Point symmetry about the origin.

        ``SYMMETRIC`` needs the weights to equal their 180-degree rotation *and*
        the origin to be the centre (otherwise rotating moves the anchor and
        convolution is correlation shifted by a pixel).
        """
        w = self.weights
        rot = w[::-1, ::-1]
        atol = SYMMETRY_RTOL * float(np.abs(w).max())
        if not self.centred:
            if atol == 0.0:  # all-zero kernel: both operations give 0
                return Symmetry.SYMMETRIC
            return Symmetry.ASYMMETRIC
        if np.allclose(w, rot, rtol=0.0, atol=atol):
            return Symmetry.SYMMETRIC
        if np.allclose(w, -rot, rtol=0.0, atol=atol):
            return Symmetry.ANTISYMMETRIC
        return Symmetry.ASYMMETRIC

    # -- separability --------------------------------------------------------
    @cached_property
    def singular_values(self) -> NDArray[np.float64]:
        """Singular values of the weight matrix, largest first."""
        s = np.linalg.svd(self.weights, compute_uv=False)
        s.setflags(write=False)
        return s

    @cached_property
    def rank(self) -> int:
        """Matrix rank: singular values above ``RANK_RTOL`` times the largest."""
        s = self.singular_values
        if s[0] == 0.0:
            return 0
        return int(np.count_nonzero(s > RANK_RTOL * s[0]))

    @property
    def separable(self) -> bool:
        """True when the kernel is an outer product ``column x row`` (rank <= 1)."""
        return self.rank <= 1

    @cached_property
    def factors(self) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        """``(column, row)`` 1-D factors with ``outer(column, row) == weights``, or None.

        Taken from the row and column through the largest weight, so integer
        kernels keep integer factors (Sobel: ``[1, 2, 1]`` and ``[-1, 0, 1]``).
        """
        if not self.separable:
            return None
        w = self.weights
        i, j = np.unravel_index(int(np.argmax(np.abs(w))), w.shape)
        pivot = w[i, j]
        if pivot == 0.0:
            col = np.zeros(w.shape[0])
            row = np.zeros(w.shape[1])
        else:
            col = w[:, j].copy()
            row = w[i, :] / pivot
        col.setflags(write=False)
        row.setflags(write=False)
        return col, row

    # -- comparison ----------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Kernel):
            return NotImplemented
        return (
            self.origin == other.origin
            and self.weights.shape == other.weights.shape
            and bool(np.array_equal(self.weights, other.weights))
        )

    def __hash__(self) -> int:
        return hash((self.origin, self.weights.shape, self.weights.tobytes()))

    def __repr__(self) -> str:
        return f"Kernel(name={self.name!r}, shape={self.shape}, origin={self.origin})"


def _rotated_name(name: str) -> str:
    if name.startswith("rot180(") and name.endswith(")"):
        return name[len("rot180(") : -1]
    return f"rot180({name})"


def as_kernel(kernel: Kernel | ArrayLike, origin: Sequence[int] | None = None) -> Kernel:
    """Return ``kernel`` if it is a :class:`Kernel`, else build one from an array."""
    if isinstance(kernel, Kernel):
        if origin is not None:
            return kernel.with_origin((int(origin[0]), int(origin[1])))
        return kernel
    if origin is None:
        return Kernel(np.asarray(kernel))
    return Kernel(np.asarray(kernel), origin=(int(origin[0]), int(origin[1])))
