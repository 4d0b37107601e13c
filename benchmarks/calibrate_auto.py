"""Fit the constants of the ``auto`` cost model (convcli/backends/auto.py) on this machine.

Times the direct backend (separable and 2-D paths) and the FFT backend over a
grid of image and kernel sizes, fits the per-tap and per-point costs by
non-negative least squares on relative error, and prints them with the
model's error on each case.  Run:

    python benchmarks/calibrate_auto.py
"""

from __future__ import annotations

import math

import numpy as np
from _common import median_ms
from scipy.optimize import nnls

from convcli.backends import direct, fft
from convcli.backends.fft import transform_work
from convcli.kernels import Kernel


def main() -> None:
    rng = np.random.default_rng(0)
    images = {
        "1000x1000x3": rng.random((1000, 1000, 3), dtype=np.float32),
        "4000x3000x3": rng.random((3000, 4000, 3), dtype=np.float32),
    }
    sep_rows, d2_rows, fft_rows = [], [], []
    for name, img in images.items():
        samples = img.size
        for taps in (3, 7, 13, 25, 49, 99):
            g = np.hanning(taps + 2)[1:-1]
            k = Kernel(np.outer(g, g))
            ms = median_ms(lambda k=k, img=img: direct.correlate(img, k, "reflect", 0.0), 3)
            sep_rows.append((name, taps, samples, 2 * taps, ms))
        for size in (3, 5, 7, 9, 15):
            k = Kernel(rng.standard_normal((size, size)))
            ms = median_ms(lambda k=k, img=img: direct.correlate(img, k, "reflect", 0.0), 3)
            d2_rows.append((name, size, samples, size * size, ms))
        for size in (3, 15, 51, 151):
            k = Kernel(rng.standard_normal((size, size)))
            ms = median_ms(lambda k=k, img=img: fft.correlate(img, k, "reflect", 0.0), 3)
            jobs, points = transform_work(img.shape, k.shape)
            fft_rows.append((name, size, jobs, points, ms))

    def fit(rows: list[tuple], label: str) -> tuple[float, float]:
        a = np.array([[r[2] * r[3], r[2]] for r in rows], dtype=float) * 1e-6
        b = np.array([r[4] for r in rows])
        (per_tap, fixed), _ = nnls(a / b[:, None], np.ones(len(b)))
        print(f"\n{label}: {per_tap:.4f} ns per sample-tap + {fixed:.3f} ns per sample")
        print(f"{'image':>12} {'kernel':>7} {'measured ms':>12} {'model ms':>9} {'ratio':>6}")
        for (name, k, _s, _t, ms), row in zip(rows, a, strict=True):
            pred = row[0] * per_tap + row[1] * fixed
            print(f"{name:>12} {k:>7} {ms:>12.1f} {pred:>9.1f} {pred / ms:>6.2f}")
        return per_tap, fixed

    fit(sep_rows, "direct, separable (taps = kh + kw)")
    fit(d2_rows, "direct, 2-D (taps = kh * kw)")
    a = np.array([[c * n * math.log2(n), c * n] for _, _, c, n, _ in fft_rows]) * 1e-6
    b = np.array([r[4] for r in fft_rows])
    (per_log, per_point), _ = nnls(a / b[:, None], np.ones(len(b)))
    print(f"\nfft: {per_log:.4f} ns per point*log2(points) + {per_point:.3f} ns per point, per job")
    print(f"{'image':>12} {'kernel':>7} {'measured ms':>12} {'model ms':>9} {'ratio':>6}")
    for (name, k, _c, _n, ms), row in zip(fft_rows, a, strict=True):
        pred = row[0] * per_log + row[1] * per_point
        print(f"{name:>12} {k:>7} {ms:>12.1f} {pred:>9.1f} {pred / ms:>6.2f}")


if __name__ == "__main__":
    main()
