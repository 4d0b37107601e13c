"""``--tiff-compression``: file size and wall time of each compression on a 12-MP photo.

    python benchmarks/bench_tiff_compression.py [--repeats 5]

Makes a 4000x3000 JPEG (quality 92) from a sample photo in a temporary folder, then times
``convcli blur photo.jpg -o out.tif --tiff-compression X`` for every X, in turn within each
round (one interleaved loop), and prints the median wall time and the file's size.  With the
``vips`` command on the PATH it also prints the size of libvips' ``tiffsave`` of the same
pixels (``vips copy out_none.tif v.tif[compression=X,predictor=horizontal]``, its default
levels) for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import photo
from PIL import Image

NAMES = ["deflate", "lzw", "zstd", "packbits", "none"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    convcli = [sys.executable, "-m", "convcli"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jpg = work / "photo.jpg"
        Image.fromarray((photo(4000, 3000) * 255 + 0.5).astype("uint8")).save(jpg, quality=92)
        times: dict[str, list[float]] = {name: [] for name in NAMES}
        for _ in range(args.repeats):
            for name in NAMES:
                out = work / f"out_{name}.tif"
                t = time.perf_counter()
                subprocess.run(
                    [*convcli, "blur", str(jpg), "-o", str(out), "--tiff-compression", name],
                    check=True,
                )
                times[name].append(time.perf_counter() - t)
        for name in NAMES:
            size = os.path.getsize(work / f"out_{name}.tif")
            line = f"{name:9s} {size:>12,d} bytes  {statistics.median(times[name]):.2f} s"
            if shutil.which("vips"):
                predictor = ",predictor=horizontal" if name in ("deflate", "lzw", "zstd") else ""
                vips = work / f"vips_{name}.tif"
                subprocess.run(
                    ["vips", "copy", str(work / "out_none.tif"),
                     f"{vips}[compression={name}{predictor}]"],
                    check=True,
                )  # fmt: skip
                line += f"  libvips {os.path.getsize(vips):>12,d} bytes"
            print(line)


if __name__ == "__main__":
    main()
