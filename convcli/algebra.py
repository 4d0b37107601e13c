"""The mathematics made visible: composing kernels, convolution as a matrix, the impulse probe.

* :func:`compose` merges kernels applied in sequence into one (convolution is
  associative: ``(I * A) * B == I * (A * B)``), and :func:`check_composition`
  proves it on a test image.
* :func:`conv_matrix` writes convolution or correlation of a small signal or
  image as a matrix ``M`` (Toeplitz in 1-D, doubly block Toeplitz in 2-D) with
  ``output = M @ vec(input)``, built from the definitions, and
  :func:`explain` checks it against convcli's own filter.
* :func:`probe` runs the impulse-response test on every backend and operation.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.signal
from numpy.typing import NDArray

from .errors import PathError, UsageError
from .filtering import BACKENDS, filter_array
from .kernels import Kernel

#: Largest input explain will build a matrix for (inputs x outputs entries).
MAX_MATRIX_ENTRIES = 4_000_000
OUTPUT_MODES: tuple[str, ...] = ("full", "same", "valid")


# -- composition -----------------------------------------------------------------------------


def compose(kernels: Sequence[Kernel]) -> Kernel:
    """One kernel equal to convolving with ``kernels`` in turn: their full convolution.

    The origin of the result is the sum of the origins, so that
    ``convolve(convolve(I, A), B) == convolve(I, compose([A, B]))`` exactly under
    ``wrap`` borders (and away from the borders under the other modes).  Offsets compose
    the same way: ``K2 * (K1 * I + o1) + o2 = (K1 * K2) * I + o1 * sum(K2) + o2``.

    >>> compose([Kernel([[1, 1]]), Kernel([[1, 1]])]).weights.tolist()
    [[1.0, 2.0, 1.0]]
    """
    if not kernels:
        raise UsageError("compose needs at least one kernel")
    weights = kernels[0].weights
    origin = kernels[0].origin
    offset = kernels[0].offset
    for k in kernels[1:]:
        weights = scipy.signal.convolve2d(weights, k.weights, mode="full")
        origin = (origin[0] + k.origin[0], origin[1] + k.origin[1])
        offset = offset * k.sum + k.offset  # K2 * (K1 * I + o1) + o2, away from the borders
    name = " * ".join(k.name for k in kernels)
    return Kernel(weights, origin=origin, name=name, offset=offset)


@dataclass(frozen=True)
class CompositionCheck:
    """The evidence that a composed kernel equals the sequence it replaces."""

    max_abs_convolution: float  #: |convolve in turn - convolve once with compose()|
    max_abs_correlation: float  #: |correlate in turn - correlate once with compose()|
    max_abs_correlated_kernels: float  #: |correlate in turn - correlate once with A corr B|
    tolerance: float
    image_shape: tuple[int, int]

    @property
    def holds(self) -> bool:
        return self.max_abs_convolution <= self.tolerance


def correlate_kernels(kernels: Sequence[Kernel]) -> Kernel:
    """Kernels merged by full *correlation* (``A corr B``): not what a chain equals."""
    weights = kernels[0].weights
    origin = kernels[0].origin
    for k in kernels[1:]:
        weights = scipy.signal.correlate2d(weights, k.weights, mode="full")
        origin = (
            origin[0] + k.shape[0] - 1 - k.origin[0],
            origin[1] + k.shape[1] - 1 - k.origin[1],
        )
    return Kernel(weights, origin=origin, name=" corr ".join(k.name for k in kernels))


def check_composition(
    kernels: Sequence[Kernel], composed: Kernel, *, seed: int = 0
) -> CompositionCheck:
    """Apply ``kernels`` in sequence and ``composed`` once to a random image, under ``wrap``.

    Convolution: the sequence equals one convolution with ``composed`` (associativity).
    Correlation: the sequence also equals one correlation with ``composed`` (a chain of
    correlations is a chain of convolutions with rotated kernels, and
    ``rot(A * B) == rot(A) * rot(B)``), but *not* one correlation with the kernels
    merged by correlation, ``A corr B``: correlation is not associative.
    """
    rows = max(composed.shape[0], 8) * 2 + 1
    cols = max(composed.shape[1], 8) * 2 + 3
    image = np.random.default_rng(seed).random((rows, cols))

    def run(op: str, ks: Sequence[Kernel]) -> NDArray[np.float64]:
        out = image
        for k in ks:
            out = filter_array(out, k, op=op, mode="wrap", dtype=np.float64)[0]
        return out

    conv_seq, corr_seq = run("convolve", kernels), run("correlate", kernels)
    scale = float(np.prod([np.abs(k.weights).sum() for k in kernels]))
    return CompositionCheck(
        max_abs_convolution=float(np.abs(conv_seq - run("convolve", [composed])).max()),
        max_abs_correlation=float(np.abs(corr_seq - run("correlate", [composed])).max()),
        max_abs_correlated_kernels=float(
            np.abs(corr_seq - run("correlate", [correlate_kernels(kernels)])).max()
        ),
        tolerance=1e-12 * max(scale, 1.0) * composed.size,
        image_shape=(rows, cols),
    )


# -- convolution as a matrix -----------------------------------------------------------------


def output_shape(in_shape: tuple[int, int], k_shape: tuple[int, int], mode: str) -> tuple[int, int]:
    """Output size of a ``full``, ``same`` or ``valid`` filter."""
    (h, w), (kh, kw) = in_shape, k_shape
    if mode == "full":
        return h + kh - 1, w + kw - 1
    if mode == "same":
        return h, w
    return h - kh + 1, w - kw + 1


def _source(op: str, mode: str, y: int, a: int, size: int, ksize: int, origin: int) -> int:
    """Input index read by output ``y`` through tap ``a`` along one axis (may be outside)."""
    if op == "convolve":
        if mode == "full":
            return y - a
        if mode == "valid":
            return y + ksize - 1 - a
        return y - a + origin
    if mode == "full":
        return y + a - (ksize - 1)
    if mode == "valid":
        return y + a
    return y + a - origin


def conv_matrix(
    in_shape: tuple[int, int], kernel: Kernel, *, op: str = "convolve", mode: str = "full"
) -> tuple[NDArray[np.float64], tuple[int, int]]:
    """The matrix ``M`` with ``vec(output) == M @ vec(input)`` (row-major ``vec``), zero borders.

    Built from the definitions tap by tap, not from the filter, so it can check
    the filter.  Returns ``M`` and the output shape.
    """
    if mode not in OUTPUT_MODES:
        raise UsageError(f"mode must be one of {', '.join(OUTPUT_MODES)}, got '{mode}'")
    out_shape = output_shape(in_shape, kernel.shape, mode)
    if out_shape[0] < 1 or out_shape[1] < 1:
        raise UsageError(
            f"a 'valid' {op} needs the input ({in_shape[0]}x{in_shape[1]}) at least as large as "
            f"the kernel ({kernel.shape[0]}x{kernel.shape[1]})"
        )
    n_in = in_shape[0] * in_shape[1]
    n_out = out_shape[0] * out_shape[1]
    if n_in * n_out > MAX_MATRIX_ENTRIES:
        raise UsageError(
            f"the matrix would have {n_out}x{n_in} = {n_out * n_in} entries, more than "
            f"explain shows ({MAX_MATRIX_ENTRIES}); use a smaller input or kernel"
        )
    m = np.zeros((n_out, n_in))
    (h, w), (kh, kw), (orow, ocol) = in_shape, kernel.shape, kernel.origin
    for y in range(out_shape[0]):
        for x in range(out_shape[1]):
            row = y * out_shape[1] + x
            for a in range(kh):
                sy = _source(op, mode, y, a, h, kh, orow)
                if not 0 <= sy < h:
                    continue
                for b in range(kw):
                    sx = _source(op, mode, x, b, w, kw, ocol)
                    if 0 <= sx < w:
                        m[row, sy * w + sx] += kernel.weights[a, b]
    return m, out_shape


def filter_output(
    image: NDArray[np.float64], kernel: Kernel, *, op: str, mode: str, backend: str = "direct"
) -> NDArray[np.float64]:
    """convcli's own filter (zero borders) cut to ``full``, ``same`` or ``valid``."""
    kh, kw = kernel.shape
    h, w = image.shape
    if mode == "same":
        return filter_array(
            image, kernel, op=op, mode="constant", backend=backend, dtype=np.float64
        )[0]
    if mode == "full":
        padded = np.pad(image, ((kh - 1, kh - 1), (kw - 1, kw - 1)))
        anchored = kernel.with_origin((0, 0))
        out = filter_array(
            padded, anchored, op=op, mode="constant", backend=backend, dtype=np.float64
        )[0]
        if op == "convolve":
            return out[kh - 1 :, kw - 1 :]
        return out[: h + kh - 1, : w + kw - 1]
    same = filter_array(image, kernel, op=op, mode="constant", backend=backend, dtype=np.float64)[0]
    oh, ow = h - kh + 1, w - kw + 1
    if op == "correlate":
        r0, c0 = kernel.origin
    else:
        r0, c0 = kh - 1 - kernel.origin[0], kw - 1 - kernel.origin[1]
    return same[r0 : r0 + oh, c0 : c0 + ow]


@dataclass(frozen=True)
class Explanation:
    """Everything ``convcli explain`` prints."""

    op: str
    mode: str
    input: NDArray[np.float64]
    kernel: Kernel
    matrix: NDArray[np.float64]
    output: NDArray[np.float64]  #: M @ vec(input), shaped
    filter_output: NDArray[np.float64]  #: convcli's own filter, for the check
    max_abs_difference: float
    windows: list[tuple[tuple[int, int], list[tuple[float, float]]]]  #: per output: (w, x) pairs

    @property
    def zeros(self) -> int:
        return int(np.count_nonzero(self.matrix == 0))

    @property
    def distinct_weights(self) -> int:
        nonzero = self.matrix[self.matrix != 0]
        return int(np.unique(nonzero).size)

    @property
    def tolerance(self) -> float:
        """Largest float64 rounding difference the check allows: 1e-12 of the largest sum."""
        scale = float(np.abs(self.kernel.weights).sum() * np.abs(self.input).max())
        return 1e-12 * max(scale, 1.0)

    @property
    def agrees(self) -> bool:
        """Whether ``M @ vec(input)`` equals convcli's own filter."""
        return self.max_abs_difference <= self.tolerance


def explain(
    image: NDArray[np.floating], kernel: Kernel, *, op: str = "convolve", mode: str = "full"
) -> Explanation:
    """Convolution/correlation of a small input as sliding dot products and as ``M @ x``.

    >>> e = explain(np.array([[1, 2, 3, 4]]), Kernel([[5, 6, 7]]), op="convolve", mode="full")
    >>> e.output.ravel().tolist()
    [5.0, 16.0, 34.0, 52.0, 45.0, 28.0]
    """
    if op not in ("convolve", "correlate"):
        raise UsageError(f"operation must be one of convolve, correlate, got '{op}'")
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.size == 0:
        raise UsageError(f"explain takes a 1-D signal or a 2-D matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise UsageError("explain needs finite input values (NaN or infinity found)")
    m, out_shape = conv_matrix(arr.shape, kernel, op=op, mode=mode)
    vec = arr.ravel()
    output = (m @ vec).reshape(out_shape)
    reference = filter_output(arr, kernel, op=op, mode=mode)
    windows = []
    for row in range(m.shape[0]):
        pairs = [(float(m[row, j]), float(vec[j])) for j in np.flatnonzero(m[row])]
        windows.append(((row // out_shape[1], row % out_shape[1]), pairs))
    return Explanation(
        op=op,
        mode=mode,
        input=arr,
        kernel=kernel,
        matrix=m,
        output=output,
        filter_output=reference,
        max_abs_difference=float(np.abs(output - reference).max()),
        windows=windows,
    )


# -- impulse probe ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeRow:
    backend: str
    op: str
    reproduces: str  #: "kernel as-is", "kernel rotated 180", or "neither"
    expected: str
    max_abs_error: float

    @property
    def ok(self) -> bool:
        return self.reproduces == self.expected


#: Asymmetric probe kernels: odd with the default origin, even with an explicit one, and a
#: rank-1 one (the direct backend's separable two-pass path).
PROBE_KERNELS = (
    Kernel([[1, 2, 3], [4, 5, 6], [7, 8, 9]], name="3x3 1..9"),
    Kernel([[1, 2, 3], [4, 5, 6]], origin=(0, 2), name="2x3 1..6, origin (0, 2)"),
    Kernel(np.outer([1, 2, 4], [1, 3, 9, 27]), name="3x4 outer([1,2,4], [1,3,9,27]), rank 1"),
)
#: Computation types probed, with the largest error that still counts as a match
#: (relative to the kernel's largest weight).
PROBE_DTYPES = ((np.float64, 1e-9), (np.float32, 1e-5))


def probe(backends: Sequence[str] = ("direct", "fft", "auto")) -> list[ProbeRow]:
    """Impulse responses of every backend and operation against the definitions.

    Convolving a single 1 reproduces the kernel as written around it (its origin on
    the 1); correlating it reproduces the kernel rotated by 180 degrees.
    """
    rows = []
    for backend in backends:
        if backend not in BACKENDS:
            raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        for op in ("convolve", "correlate"):
            worst = 0.0
            verdicts = set()
            for k, (dtype, rel_tol) in itertools.product(PROBE_KERNELS, PROBE_DTYPES):
                impulse = np.zeros((9, 9))
                impulse[4, 4] = 1.0
                out = filter_array(
                    impulse, k, op=op, mode="constant", backend=backend, dtype=dtype
                )[0].astype(np.float64)
                tol = rel_tol * float(np.abs(k.weights).max())
                kh, kw = k.shape
                as_is = out[4 - k.origin[0] : 4 - k.origin[0] + kh,
                            4 - k.origin[1] : 4 - k.origin[1] + kw]  # fmt: skip
                r = k.rotated()
                rotated = out[4 - r.origin[0] : 4 - r.origin[0] + kh,
                              4 - r.origin[1] : 4 - r.origin[1] + kw]  # fmt: skip
                err_as_is = float(np.abs(as_is - k.weights).max())
                err_rot = float(np.abs(rotated - r.weights).max())
                rest = np.abs(out).sum() - np.abs(k.weights).sum()
                if err_as_is < tol and abs(rest) < tol * out.size:
                    verdicts.add("kernel as-is")
                    worst = max(worst, err_as_is)
                elif err_rot < tol and abs(rest) < tol * out.size:
                    verdicts.add("kernel rotated 180")
                    worst = max(worst, err_rot)
                else:
                    verdicts.add("neither")
                    worst = max(worst, min(err_as_is, err_rot))
            found = verdicts.pop() if len(verdicts) == 1 else "neither"
            expected = "kernel as-is" if op == "convolve" else "kernel rotated 180"
            rows.append(ProbeRow(backend, op, found, expected, worst))
    return rows


def save_matrix(matrix: NDArray[np.float64], path: str) -> None:
    """Write ``M`` as ``.npy`` or ``.csv`` (by extension)."""
    import io
    from pathlib import Path

    from .atomic import write_atomically

    p = Path(path)
    check_matrix_path(path)
    buf = io.BytesIO()
    if p.suffix.lower() == ".npy":
        np.save(buf, matrix, allow_pickle=False)
    else:
        np.savetxt(buf, matrix, delimiter=",", fmt="%.17g")
    try:
        write_atomically(p, buf.getvalue())
    except OSError as exc:
        raise PathError(f"{path}: cannot write the matrix ({exc.strerror or exc})") from None


def check_matrix_path(path: str) -> None:
    """Refuse a ``--save-matrix`` path that :func:`save_matrix` cannot write, before any work."""
    from pathlib import Path

    p = Path(path)
    if p.suffix.lower() not in (".npy", ".csv"):
        raise UsageError(f"cannot tell the matrix format from '{p.name}'; use .npy or .csv")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise PathError(f"{path}: folder '{folder}' does not exist")
