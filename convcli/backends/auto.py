"""``auto``: pick the faster backend with a cost model measured on this machine class.

The model predicts wall time from the work each backend does:

* direct, separable:   ``samples * (DIRECT_SEP_PER_TAP * (kh + kw) + DIRECT_SEP_FIXED)``
* direct, 2-D:         ``samples * (DIRECT_2D_PER_TAP * nonzero_taps + DIRECT_2D_FIXED)``
* fft:                 ``jobs * (FFT_PER_POINT_LOG * n * log2(n) + FFT_PER_POINT * n)``
                       with ``jobs`` = channels x strips and ``n = Fh * Fw`` the (fast)
                       size of one strip's transform (see ``fft.strip_plan``),

in nanoseconds, for float32 on 2 cores; float64 costs ``FLOAT64_FACTOR`` more
on both sides.  The constants were fitted by ``benchmarks/calibrate_auto.py``
(which prints them) on the project's 2-core machines; ``auto``'s regret
(its time over the best backend's) is reported by
``benchmarks/bench_backends.py``.  scipy's ``choose_conv_method`` is not used:
it compares FFT against a far slower direct path and picks FFT even for 3x3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..kernels import Kernel

# Nanoseconds per output sample (one channel of one pixel), 2 cores, float32.
DIRECT_SEP_PER_TAP = 0.054
DIRECT_SEP_FIXED = 0.64
DIRECT_2D_PER_TAP = 0.030
DIRECT_2D_FIXED = 0.48
# Nanoseconds per transform point of one job, divided by the cores that share the jobs
# (forward + inverse + multiply + fill/crop).
FFT_PER_POINT_LOG = 0.51
FFT_PER_POINT = 0.0
FLOAT64_FACTOR = 1.6


@dataclass(frozen=True)
class Plan:
    """Which backend and code path a filter runs on, and why."""

    backend: str  #: "direct" or "fft"
    method: str  #: "separable", "2d" or "fft"
    reason: str  #: one line a person can read
    estimate_ms: dict[str, float]  #: predicted time per backend (auto only; else empty)


def direct_cost_ms(shape: tuple[int, int, int], kernel: Kernel) -> float:
    """Predicted time of the direct backend, milliseconds."""
    samples = shape[0] * shape[1] * shape[2]
    rows, cols = kernel.shape
    if kernel.separable:
        per = DIRECT_SEP_PER_TAP * (rows + cols) + DIRECT_SEP_FIXED
    else:
        nonzero = int((kernel.weights != 0).sum()) or 1
        per = DIRECT_2D_PER_TAP * nonzero + DIRECT_2D_FIXED
    return samples * per * 1e-6


def fft_cost_ms(shape: tuple[int, int, int], kernel: Kernel) -> float:
    """Predicted time of the FFT backend, milliseconds."""
    from .fft import transform_work

    jobs, n = transform_work(shape, kernel.shape)
    return jobs * (FFT_PER_POINT_LOG * n * math.log2(max(n, 2)) + FFT_PER_POINT * n) * 1e-6


def direct_method(kernel: Kernel) -> str:
    """``"separable"`` or ``"2d"``: the direct backend's path for this kernel."""
    return "separable" if kernel.separable else "2d"


def choose_backend(shape: tuple[int, int, int], kernel: Kernel, *, float64: bool = False) -> Plan:
    """Pick ``direct`` or ``fft`` to correlate an image of ``shape`` (H, W, C) with ``kernel``."""
    direct = direct_cost_ms(shape, kernel)
    fft = fft_cost_ms(shape, kernel)
    if float64:
        direct *= FLOAT64_FACTOR
        fft *= FLOAT64_FACTOR
    estimates = {"direct": direct, "fft": fft}
    rows, cols = kernel.shape
    method = direct_method(kernel)
    what = f"{rows}x{cols} {'separable' if method == 'separable' else 'non-separable'} kernel"
    if direct <= fft:
        return Plan(
            "direct", method, f"{what}: direct ~{direct:.3g} ms < fft ~{fft:.3g} ms", estimates
        )
    return Plan("fft", "fft", f"{what}: fft ~{fft:.3g} ms < direct ~{direct:.3g} ms", estimates)
