"""Backends on a 12-MP RGB float32 image: time, MP/s, auto's choice and regret, peak memory.

    python benchmarks/bench_backends.py [--repeats 3] [--size 4000x3000]

Prints one table from one run: medians of --repeats rounds after a warm-up, the
backends of a row timed in turn within each round so that drift on a shared,
noisy machine hits them alike (compare ratios within the table).  A backend
whose predicted time exceeds --max-seconds is not run (marked "skipped") —
the direct path on a 151x151 non-separable kernel would take minutes.
Regret = auto's measured time / the best measured backend's time.
Peak memory is the process's peak resident size over the whole run, against
the size of the float32 image.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import interleaved_medians, peak_rss_mb, photo

from convcli.backends import direct, fft
from convcli.backends.auto import direct_cost_ms, fft_cost_ms
from convcli.filtering import filter_array, plan_filter
from convcli.kernels import Kernel, builtin_kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--max-seconds", type=float, default=4.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    img = np.ascontiguousarray(photo(width, height))
    mp = width * height / 1e6
    rng = np.random.default_rng(0)
    cases = [
        ("3x3 sharpen", builtin_kernel("sharpen")),
        ("gaussian s=2 (13 taps)", builtin_kernel("gaussian", sigma=2)),
        ("gaussian s=8 (49 taps)", builtin_kernel("gaussian", sigma=8)),
        ("random 15x15", Kernel(rng.standard_normal((15, 15)) / 15)),
        ("random 51x51", Kernel(rng.standard_normal((51, 51)) / 51)),
        ("random 151x151", Kernel(rng.standard_normal((151, 151)) / 151)),
    ]
    header = (
        f"{'kernel':<24} {'direct ms':>10} {'MP/s':>6} {'fft ms':>8} {'MP/s':>6} "
        f"{'auto':>7} {'auto ms':>8} {'MP/s':>6} {'regret':>7}"
    )
    print(
        f"image {width}x{height} RGB float32 ({img.nbytes / 2**20:.0f} MiB), "
        f"median of {args.repeats}"
    )
    print(header)
    print("-" * len(header))
    for label, k in cases:
        shape = img.shape
        runs = {
            "auto": lambda k=k: filter_array(img, k, op="correlate", backend="auto"),
        }
        if direct_cost_ms(shape, k) <= args.max_seconds * 1000:
            runs["direct"] = lambda k=k: direct.correlate(img, k, "reflect", 0.0)
        if fft_cost_ms(shape, k) <= args.max_seconds * 1000:
            runs["fft"] = lambda k=k: fft.correlate(img, k, "reflect", 0.0)
        times = interleaved_medians(runs, args.repeats)
        auto_ms = times.pop("auto")
        chosen = plan_filter(shape, k)
        best = min(times.values())
        cells = []
        for name, width_ms in (("direct", 10), ("fft", 8)):
            if name in times:
                cells.append(f"{times[name]:>{width_ms}.1f} {mp / times[name] * 1000:>6.0f}")
            else:
                cells.append(f"{'skipped':>{width_ms}} {'':>6}")
        print(
            f"{label:<24} {cells[0]} {cells[1]} {chosen.backend:>7} {auto_ms:>8.1f} "
            f"{mp / auto_ms * 1000:>6.0f} {auto_ms / best:>7.2f}",
            flush=True,
        )
    peak = peak_rss_mb()
    print(
        f"\npeak resident memory {peak:.0f} MiB = {peak / (img.nbytes / 2**20):.2f}x "
        "the float32 image (includes the interpreter, numpy/scipy and the source photo)"
    )


if __name__ == "__main__":
    main()
