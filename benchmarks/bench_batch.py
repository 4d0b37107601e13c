"""Batch throughput: 50 JPEGs of 1024x1024, Gaussian sigma=2, --jobs 1 against --jobs 2.

    python benchmarks/bench_batch.py [--images 50] [--size 1024] [--repeats 3]

Makes the JPEGs from a sample photo in a temporary folder, then runs the same
batch (convcli.batch.run_batch, the code behind ``convcli batch``) three ways,
in turn within each of --repeats rounds, each into a fresh output folder:

* ``--jobs 1``: one image at a time in this process, the filter on every core;
* ``--jobs 1``, filter on 1 thread: the same with everything on one core, the
  baseline for how the worker processes scale;
* ``--jobs 2``: two worker processes, the filter on one thread each (the cores
  are shared between the workers).

Prints one table from that one run: median wall time, images/s, megapixels/s,
speed-ups, and the per-image overhead: wall time per image (1 worker) minus the
time the job itself spent reading, filtering and writing (from the per-file
timings the batch records).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import photo
from PIL import Image

from convcli.backends.direct import set_thread_limit
from convcli.batch import JobSettings, plan_batch, run_batch
from convcli.kernels import builtin_kernel
from convcli.process import FilterOptions


def make_inputs(folder: Path, count: int, size: int) -> None:
    """``count`` different ``size x size`` JPEGs cut from one upscaled sample photo."""
    big = (photo(size + count * 7, size + count * 5) * 255).round().astype(np.uint8)
    for i in range(count):
        crop = big[i * 5 : i * 5 + size, i * 7 : i * 7 + size]
        Image.fromarray(crop).save(folder / f"img{i:03d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = JobSettings((builtin_kernel("gaussian", sigma=2),), FilterOptions())
    work = Path(tempfile.mkdtemp(prefix="convcli-bench-batch-"))
    try:
        src = work / "in"
        src.mkdir()
        make_inputs(src, args.images, args.size)
        runs = {  # label: (workers, filter threads or None for every core)
            "--jobs 1": (1, None),
            "--jobs 1, 1 thread": (1, 1),
            "--jobs 2": (2, None),
        }
        walls: dict[str, list[float]] = {label: [] for label in runs}
        inside: list[tuple[float, float, float]] = []  # read, filter, write per image
        for rnd in range(args.repeats + 1):  # round 0 warms caches and is not counted
            for label, (jobs, threads) in runs.items():
                out = work / f"out-{rnd}-{jobs}-{threads}"
                plan = plan_batch(src, out)
                run_settings = replace(settings, threads=threads)
                t0 = time.perf_counter()
                summary = run_batch(plan, run_settings, jobs=jobs)
                wall = time.perf_counter() - t0
                set_thread_limit(None)  # a 1-thread run in this process sets the limit
                if summary.count("processed") != args.images:
                    raise SystemExit(f"batch failed: {[r.reason for r in summary.results]}")
                if rnd:
                    walls[label].append(wall)
                    if label == "--jobs 1":
                        inside.append(
                            tuple(
                                statistics.mean(getattr(r, f) for r in summary.results)
                                for f in ("read_s", "filter_s", "write_s")
                            )
                        )
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mp = args.images * args.size * args.size / 1e6
    med = {label: statistics.median(v) for label, v in walls.items()}
    base, single = med["--jobs 1"], med["--jobs 1, 1 thread"]
    print(
        f"{args.images} JPEGs of {args.size}x{args.size} RGB, gaussian sigma=2, "
        f"median of {args.repeats} rounds"
    )
    header = (
        f"{'run':<20} {'wall s':>7} {'images/s':>9} {'MP/s':>6} "
        f"{'vs --jobs 1':>12} {'vs 1 thread':>12}"
    )
    print(header)
    print("-" * len(header))
    for label, wall in med.items():
        print(
            f"{label:<20} {wall:>7.2f} {args.images / wall:>9.1f} {mp / wall:>6.1f} "
            f"{base / wall:>11.2f}x {single / wall:>11.2f}x"
        )
    per_image = base / args.images * 1000
    read_ms, filter_ms, write_ms = (statistics.median(v) * 1000 for v in zip(*inside, strict=True))
    # overhead of each round: its wall time per image minus its jobs' own time
    overhead_ms = statistics.median(
        (wall / args.images - sum(parts)) * 1000
        for wall, parts in zip(walls["--jobs 1"], inside, strict=True)
    )
    print(
        f"\nper image, --jobs 1: {per_image:.1f} ms wall = read {read_ms:.1f} + filter "
        f"{filter_ms:.1f} + write {write_ms:.1f} + overhead {overhead_ms:.2f} ms "
        f"(medians of {args.repeats} rounds)"
    )


if __name__ == "__main__":
    main()
