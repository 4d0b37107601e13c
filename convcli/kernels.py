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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import KernelError

#: Largest accepted kernel side: 1025 taps (a 1025x1025 kernel is 8 MiB of float64).
MAX_KERNEL_SIDE = 1025

#: Weights closer than this times the largest ``|weight|`` count as equal in
#: :attr:`Kernel.symmetry`: float64 rounding of computed kernels (a composition's sums,
#: about 1e-16) stays below it, any real asymmetry (1e-9 of the largest weight included)
#: counts.
SYMMETRY_RTOL = 1e-12
#: Relative tolerance for "zero" singular values (rank).
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
    #: Added to every result of this kernel, in levels of the image it filters (libvips'
    #: ``.mat`` offset: ``out = sum(weights * in) + offset``; 128 is mid-grey for 8-bit
    #: images, so 128/255 on convcli's 0..1 scale, 128/65535 for 16-bit, 128 for float).
    offset: float = 0.0

    def __post_init__(self) -> None:
        w = _as_weights(self.weights)
        object.__setattr__(self, "weights", w)
        try:
            offset = float(self.offset)
        except (TypeError, ValueError):
            raise KernelError(f"kernel offset must be a number, got {self.offset!r}") from None
        if not np.isfinite(offset):
            raise KernelError(f"kernel offset must be finite, got {offset}")
        object.__setattr__(self, "offset", offset)
        rows, cols = w.shape
        if self.origin == (-1, -1):
            origin = (rows // 2, cols // 2)
        else:
            try:
                origin = (int(self.origin[0]), int(self.origin[1]))
            except (TypeError, ValueError, IndexError):
                raise KernelError(
                    f"kernel origin must be two integers, got {self.origin!r}"
                ) from None
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
            offset=self.offset,
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
        return Kernel(self.weights / total, origin=self.origin, name=self.name, offset=self.offset)

    def scaled(self, factor: float, offset: float = 0.0) -> Kernel:
        """Weights multiplied by ``factor`` (``offset`` is added to the weights)."""
        return Kernel(
            self.weights * factor + offset, origin=self.origin, name=self.name, offset=self.offset
        )

    def with_origin(self, origin: tuple[int, int]) -> Kernel:
        """The same weights with another origin."""
        return Kernel(self.weights, origin=origin, name=self.name, offset=self.offset)

    def with_name(self, name: str) -> Kernel:
        """The same kernel under another name."""
        return Kernel(self.weights, origin=self.origin, name=name, offset=self.offset)

    # -- symmetry ------------------------------------------------------------
    def about_origin(self) -> Kernel:
        """The same kernel on an odd-sized array centred on its origin (zeros added).

        A kernel is a function of the offset from its origin (zero outside the array);
        this array holds every offset ``d`` whose mirror ``-d`` is also held, so that
        ``rot180`` of the weights is the kernel rotated about its origin.
        """
        rows, cols = self.shape
        (r0, c0), (r1, c1) = self.origin, (rows - 1 - self.origin[0], cols - 1 - self.origin[1])
        ry, rx = max(r0, r1), max(c0, c1)
        if self.centred:
            return self
        w = np.zeros((2 * ry + 1, 2 * rx + 1))
        w[ry - r0 : ry + r1 + 1, rx - c0 : rx + c1 + 1] = self.weights
        return Kernel(w, origin=(ry, rx), name=self.name)

    def flip_difference(self, sign: float = 1.0) -> Kernel | None:
        """``rot180(K) - K`` (``sign=-1``: ``rot180(K) + K``) about the origin, trimmed to its
        non-zero weights, or None when it is zero: the kernel with
        ``convolve(I, K) - correlate(I, K) == correlate(I, flip_difference())`` (``+`` for
        ``sign=-1``), since both operations are linear in the kernel.

        Weights that differ (``sign=-1``: cancel) by at most :data:`SYMMETRY_RTOL` of the
        largest ``|weight|`` count as equal, as in :attr:`symmetry`, so this is None exactly
        when the kernel is symmetric (``sign=-1``: antisymmetric).
        """
        centred = self.about_origin()
        w = centred.weights
        d = w[::-1, ::-1] - sign * w
        atol = SYMMETRY_RTOL * float(np.abs(w).max())
        d = np.where(np.abs(d) > atol, d, 0.0)
        used = np.argwhere(d != 0.0)
        if used.size == 0:
            return None
        (t, left), (b, right) = used.min(axis=0), used.max(axis=0)
        oy, ox = centred.origin
        t, left = min(t, oy), min(left, ox)  # the origin stays inside the trimmed array
        b, right = max(b, oy), max(right, ox)
        name = f"rot180({self.name}) {'-' if sign > 0 else '+'} {self.name}"
        return Kernel(d[t : b + 1, left : right + 1], origin=(oy - t, ox - left), name=name)

    @cached_property
    def symmetry(self) -> Symmetry:
        """Point symmetry about the origin, the weights taken as a function of the offset
        from the origin (zero outside the array).

        ``SYMMETRIC``: ``K(d) == K(-d)`` for every offset ``d`` (convolution == correlation);
        ``ANTISYMMETRIC``: ``K(d) == -K(-d)`` (convolution == -correlation), within
        :data:`SYMMETRY_RTOL` of the largest weight.  So a 5x5 array whose weights fill
        its top-left 3x3 symmetrically, with origin (1, 1), is symmetric; symmetric
        weights anchored off their centre (an even box, say) are not.  An all-zero kernel
        is symmetric.
        """
        if self.flip_difference(1.0) is None:
            return Symmetry.SYMMETRIC
        if self.flip_difference(-1.0) is None:
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
            if col[i] < 0:  # sign convention: the column factor's largest entry is positive
                col, row = -col, -row
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


# -- built-in named kernels ------------------------------------------------------------------
#
# Spec syntax: NAME[:key=value,...], e.g. "gaussian:sigma=2", "sobel:axis=y",
# "motion:length=9,angle=30".  Every built-in is listed by `convcli kernels list`.


@dataclass(frozen=True)
class Param:
    """One parameter of a built-in kernel."""

    name: str
    kind: type  #: int, float or str
    default: object  #: None: required, unless ``derived``
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None  #: inclusive lower bound, if any
    positive: bool = False  #: must be > 0
    derived: bool = False  #: optional with no fixed default: computed from the others

    def describe(self) -> str:
        """``name=default`` (or ``name=<kind>`` when required), with the choices."""
        if self.choices:
            value = "|".join(self.choices)
        else:
            value = self.kind.__name__
        text = f"{self.name}={value}"
        if self.default is not None:
            text += f" (default {self.default})"
        elif self.derived:
            text += " (optional)"
        else:
            text += " (required)"
        return text

    def parse(self, kernel: str, raw: object) -> object:
        """Convert and check a value; :class:`KernelSpecError` names the kernel and parameter."""
        from .errors import KernelSpecError

        try:
            if self.kind is int:
                as_float = float(raw)  # type: ignore[arg-type]
                if not as_float.is_integer():
                    raise ValueError
                value: object = int(as_float)
            elif self.kind is float:
                value = float(raw)  # type: ignore[arg-type]
                if not np.isfinite(value):
                    raise ValueError
            else:
                value = str(raw).strip().lower()
        except (TypeError, ValueError):
            raise KernelSpecError(
                f"{kernel}: {self.name} must be {'an integer' if self.kind is int else 'a number'}"
                f", got '{raw}'"
            ) from None
        if self.choices and value not in self.choices:
            raise KernelSpecError(
                f"{kernel}: {self.name} must be one of {', '.join(self.choices)}, got '{raw}'"
            )
        if self.positive and not value > 0:  # type: ignore[operator]
            raise KernelSpecError(f"{kernel}: {self.name} must be > 0, got {raw}")
        if self.minimum is not None and value < self.minimum:  # type: ignore[operator]
            raise KernelSpecError(f"{kernel}: {self.name} must be >= {self.minimum:g}, got {raw}")
        return value


@dataclass(frozen=True)
class BuiltinKernel:
    """A named kernel family: its parameters, its definition, and how to build it."""

    name: str
    description: str
    formula: str
    params: tuple[Param, ...]
    build: Callable[..., NDArray[np.float64]]


def _check_side(kernel: str, size: int) -> int:
    from .errors import KernelSpecError

    if size > MAX_KERNEL_SIDE:
        raise KernelSpecError(
            f"{kernel}: size {size} is too large (at most {MAX_KERNEL_SIDE} taps a side)"
        )
    return size


def _gauss1d(sigma: float, size: int | None) -> NDArray[np.float64]:
    radius = int(math.ceil(3 * sigma)) if size is None else (size - 1) // 2
    n = 2 * radius + 1 if size is None else size
    _check_side("gaussian", n)
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _identity(size: int) -> NDArray[np.float64]:
    from .errors import KernelSpecError

    if size % 2 == 0:
        raise KernelSpecError(f"identity: size must be odd, got {size}")
    _check_side("identity", size)
    w = np.zeros((size, size))
    w[size // 2, size // 2] = 1.0
    return w


def _box(size: int) -> NDArray[np.float64]:
    _check_side("box", size)
    return np.full((size, size), 1.0 / (size * size))


def _gaussian(sigma: float, size: int | None = None) -> NDArray[np.float64]:
    g = _gauss1d(sigma, size)
    return np.outer(g, g)


def _sharpen(amount: float) -> NDArray[np.float64]:
    # identity + amount * (identity - 4-neighbour mean including centre weights):
    # I + amount * L where L = [[0,-1,0],[-1,4,-1],[0,-1,0]]
    lap = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=np.float64)
    w = amount * lap
    w[1, 1] += 1.0
    return w


def _unsharp(sigma: float, amount: float, size: int | None = None) -> NDArray[np.float64]:
    g = _gaussian(sigma, size)
    delta = np.zeros_like(g)
    delta[g.shape[0] // 2, g.shape[1] // 2] = 1.0
    return delta + amount * (delta - g)


def _laplacian(neighbours: int) -> NDArray[np.float64]:
    if neighbours == 4:
        return np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    return np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]], dtype=np.float64)


def _log(sigma: float, size: int | None = None) -> NDArray[np.float64]:
    radius = int(math.ceil(4 * sigma)) if size is None else (size - 1) // 2
    n = 2 * radius + 1 if size is None else size
    _check_side("log", n)
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    xx, yy = np.meshgrid(x, x)
    r2 = (xx**2 + yy**2) / (2 * sigma**2)
    w = -(1.0 / (math.pi * sigma**4)) * (1 - r2) * np.exp(-r2)
    return w - w.mean()


_DERIVATIVE_SMOOTH = {
    "sobel": [1.0, 2.0, 1.0],
    "prewitt": [1.0, 1.0, 1.0],
    "scharr": [3.0, 10.0, 3.0],
}


def _derivative(name: str, axis: str) -> NDArray[np.float64]:
    smooth = np.array(_DERIVATIVE_SMOOTH[name])
    diff = np.array([-1.0, 0.0, 1.0])
    return np.outer(smooth, diff) if axis == "x" else np.outer(diff, smooth)


_EMBOSS_BASE = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)  # light from se
_EMBOSS_TURNS = {"se": 0, "ne": 1, "nw": 2, "sw": 3}


def _emboss(direction: str) -> NDArray[np.float64]:
    if direction in _EMBOSS_TURNS:
        return np.rot90(_EMBOSS_BASE, _EMBOSS_TURNS[direction]).copy()
    axial = np.array([[-1, -2, -1], [0, 1, 0], [1, 2, 1]], dtype=np.float64)  # light from s
    turns = {"s": 0, "e": 1, "n": 2, "w": 3}[direction]
    return np.rot90(axial, turns).copy()


def _motion(length: int, angle: float) -> NDArray[np.float64]:
    _check_side("motion", 2 * length - 1)
    theta = math.radians(angle)
    dx, dy = math.cos(theta), -math.sin(theta)  # image rows grow downwards
    r = length - 1
    size = 2 * r + 1
    w = np.zeros((size, size))
    # one point per pixel of the streak, each splatted bilinearly: every point weighs
    # the same, so the streak is uniform (exactly 1/length per tap along an axis)
    for t in range(length):
        x, y = r + t * dx, r + t * dy
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for yy, xx, wt in (
            (y0, x0, (1 - fx) * (1 - fy)),
            (y0, x0 + 1, fx * (1 - fy)),
            (y0 + 1, x0, (1 - fx) * fy),
            (y0 + 1, x0 + 1, fx * fy),
        ):
            if 0 <= yy < size and 0 <= xx < size and wt > 1e-12:
                w[yy, xx] += wt
    return w / w.sum()


#: The optional side length of Gaussian-based kernels (3 sigma each side by default).
_SIZE_3_SIGMA = Param(
    "size", int, None, "side length (default 2*ceil(3*sigma)+1)", positive=True, derived=True
)
_AXIS = Param("axis", str, "x", "x: derivative along columns (d/dx); y: along rows", ("x", "y"))

BUILTINS: dict[str, BuiltinKernel] = {
    k.name: k
    for k in (
        BuiltinKernel(
            "identity",
            "delta: returns the image unchanged",
            "size x size zeros with 1 at the centre",
            (Param("size", int, 1, "odd side length", positive=True),),
            _identity,
        ),
        BuiltinKernel(
            "box",
            "mean of a size x size window (separable)",
            "1/size^2 everywhere",
            (
                Param(
                    "size",
                    int,
                    3,
                    "side length (even sizes anchor below/right of centre)",
                    positive=True,
                ),
            ),
            _box,
        ),
        BuiltinKernel(
            "gaussian",
            "Gaussian blur (separable)",
            "outer(g, g), g[i] = exp(-x_i^2 / (2 sigma^2)) / sum, x_i = i - (size-1)/2, "
            "size = 2*ceil(3 sigma) + 1 by default",
            (
                Param("sigma", float, None, "standard deviation in pixels", positive=True),
                _SIZE_3_SIGMA,
            ),
            _gaussian,
        ),
        BuiltinKernel(
            "sharpen",
            "3x3 sharpen: identity + amount * 4-neighbour Laplacian (negated)",
            "delta + amount * [[0,-1,0],[-1,4,-1],[0,-1,0]]; amount=1: [[0,-1,0],[-1,5,-1],"
            "[0,-1,0]]",
            (Param("amount", float, 1.0, "strength (0: identity)"),),
            _sharpen,
        ),
        BuiltinKernel(
            "unsharp",
            "unsharp mask: identity + amount * (identity - gaussian)",
            "delta + amount * (delta - gaussian(sigma, size))",
            (
                Param("sigma", float, None, "blur standard deviation", positive=True),
                Param("amount", float, 1.0, "strength"),
                _SIZE_3_SIGMA,
            ),
            _unsharp,
        ),
        BuiltinKernel(
            "laplacian",
            "discrete Laplacian (second derivative, sum 0)",
            "4: [[0,1,0],[1,-4,1],[0,1,0]]; 8: [[1,1,1],[1,-8,1],[1,1,1]]",
            (Param("neighbours", str, "4", "4 or 8 neighbours", ("4", "8")),),
            lambda neighbours: _laplacian(int(neighbours)),
        ),
        BuiltinKernel(
            "log",
            "Laplacian of Gaussian (blob/edge detector, sum 0)",
            "-(1/(pi sigma^4)) (1 - r^2/(2 sigma^2)) exp(-r^2/(2 sigma^2)), minus its mean; "
            "size = 2*ceil(4 sigma) + 1 by default",
            (
                Param("sigma", float, None, "standard deviation", positive=True),
                Param(
                    "size",
                    int,
                    None,
                    "side length (default 2*ceil(4*sigma)+1)",
                    positive=True,
                    derived=True,
                ),
            ),
            _log,
        ),
        BuiltinKernel(
            "sobel",
            "Sobel derivative (separable, antisymmetric)",
            "x: outer([1,2,1], [-1,0,1]); y: outer([-1,0,1], [1,2,1])",
            (_AXIS,),
            lambda axis: _derivative("sobel", axis),
        ),
        BuiltinKernel(
            "prewitt",
            "Prewitt derivative (separable, antisymmetric)",
            "x: outer([1,1,1], [-1,0,1]); y: outer([-1,0,1], [1,1,1])",
            (_AXIS,),
            lambda axis: _derivative("prewitt", axis),
        ),
        BuiltinKernel(
            "scharr",
            "Scharr derivative (separable, antisymmetric)",
            "x: outer([3,10,3], [-1,0,1]); y: outer([-1,0,1], [3,10,3])",
            (_AXIS,),
            lambda axis: _derivative("scharr", axis),
        ),
        BuiltinKernel(
            "emboss",
            "emboss / relief (asymmetric, sum 1)",
            "se: [[-2,-1,0],[-1,1,1],[0,1,2]], rotated by 90 degrees for ne, nw, sw; "
            "s: [[-1,-2,-1],[0,1,0],[1,2,1]], rotated for e, n, w",
            (
                Param(
                    "direction",
                    str,
                    "se",
                    "where the light comes from",
                    ("n", "ne", "e", "se", "s", "sw", "w", "nw"),
                ),
            ),
            _emboss,
        ),
        BuiltinKernel(
            "motion",
            "motion blur: a one-sided streak from the origin (asymmetric), sum 1",
            "`length` equally weighted points one pixel apart, from the centre of a "
            "(2*length-1)^2 kernel towards `angle` degrees anticlockwise from +x, each split "
            "bilinearly over its 4 nearest pixels (1/length per tap along an axis); sum 1",
            (
                Param("length", int, 9, "streak length in pixels", positive=True),
                Param("angle", float, 0.0, "direction in degrees, anticlockwise from +x"),
            ),
            _motion,
        ),
    )
}


def builtin_kernel(name: str, **params: object) -> Kernel:
    """Build a built-in kernel by name with keyword parameters.

    >>> builtin_kernel("sobel", axis="x").weights.astype(int).tolist()
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    """
    from .errors import KernelSpecError

    key = name.strip().lower()
    spec = BUILTINS.get(key)
    if spec is None:
        import difflib  # (only for this message: 1.5 ms of every start-up otherwise)

        close = difflib.get_close_matches(key, BUILTINS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise KernelSpecError(
            f"unknown kernel '{name}'{hint}; built-ins: {', '.join(sorted(BUILTINS))}"
        )
    known = {p.name: p for p in spec.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise KernelSpecError(f"{key}: unknown parameter '{unknown[0]}' (parameters: {allowed})")
    values: dict[str, object] = {}
    for p in spec.params:
        if p.name in params and params[p.name] is not None:
            values[p.name] = p.parse(key, params[p.name])
        elif p.default is None and not p.derived:
            raise KernelSpecError(f"{key}: missing parameter '{p.name}' ({p.help})")
        elif p.default is not None:
            values[p.name] = p.parse(key, p.default)
    shown = ",".join(f"{k}={v}" for k, v in values.items() if k in params)
    label = f"{key}({shown})" if shown else key
    try:
        with np.errstate(all="ignore"):  # extreme parameters are reported below, not warned
            weights = np.asarray(spec.build(**values), dtype=np.float64)
    except (ArithmeticError, ValueError):  # ZeroDivisionError, OverflowError, ...
        weights = np.array([[np.nan]])
    if not np.isfinite(weights).all() or not np.any(weights):
        raise KernelSpecError(
            f"{label}: these parameters give no usable kernel (weights overflow, underflow "
            "or are all zero); use values of an ordinary size"
        )
    return Kernel(weights, name=label)


def parse_spec(spec: str) -> Kernel:
    """Build a kernel from ``NAME[:key=value,...]``.

    >>> parse_spec("gaussian:sigma=2").shape
    (13, 13)
    """
    from .errors import KernelSpecError

    name, _, rest = spec.strip().partition(":")
    params: dict[str, object] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise KernelSpecError(
                    f"kernel spec '{spec}': expected key=value, got '{item.strip()}'"
                )
            params[key.strip().lower()] = value.strip()
    return builtin_kernel(name, **params)
