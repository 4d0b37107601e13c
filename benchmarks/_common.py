"""Shared helpers for the benchmark scripts (not part of the library)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each callable, timed in turn within each of ``repeats`` rounds."""
    for fn in runs.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def photo(width: int, height: int) -> np.ndarray:
    """A real photo from sample_images/, resized to ``width x height``, RGB float32 in [0, 1]."""
    from PIL import Image

    candidates = sorted((ROOT / "sample_images").glob("*.jpg")) + sorted(
        (ROOT / "sample_images").glob("*.png")
    )
    for path in candidates:
        with Image.open(path) as im:
            if im.mode == "RGB":
                big = im.resize((width, height), Image.Resampling.BICUBIC)
                return np.asarray(big, dtype=np.float32) / 255.0
    raise SystemExit("no RGB photo found in sample_images/")
