"""Start-up: small jobs as whole processes, convcli against libvips and ImageMagick.

    python benchmarks/bench_startup.py --repeats 15

Times, as child processes run in turn within each round (one uncounted warm-up round):

* help: ``convcli --help``;
* small: ``convcli blur 64x64.png -o out.png`` against ``vips gaussblur 64x64.png out.png 2``
  (and ImageMagick ``convert -gaussian-blur 0x2`` when installed);
* sample loop: the README's main job (blur, sharpen and edges of the six sample images,
  18 calls) against the same 18 calls made with vips (gaussblur, sharpen, sobel).

The small case also times ``python -c "import numpy, click, PIL.Image"``: the start-up no
command built on them can go below.  Prints the median wall time of each and the ratio
convcli / peer from the same run (above 1: convcli is slower).  The issue's floors: small at
most 2x vips, help at most 0.1 s.
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

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def convcli_cmd() -> list[str]:
    found = shutil.which("convcli")
    return [found] if found else [sys.executable, "-m", "convcli"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def timed_loop(cmds: list[list[str]]) -> float:
    t0 = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    cc = convcli_cmd()
    vips = shutil.which("vips")
    im = shutil.which("magick") or shutil.which("convert")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(work / "s.png")
        samples = sorted((ROOT / "sample_images").glob("*.jpg")) + sorted(
            (ROOT / "sample_images").glob("*.png")
        )
        cases: dict[str, dict[str, object]] = {
            "help": {"convcli": lambda: timed([*cc, "--help"])},
            "small 64x64 blur": {
                "convcli": lambda: timed(
                    [*cc, "blur", str(work / "s.png"), "-o", str(work / "c.png")]
                ),
            },
            "sample loop (18 calls)": {
                "convcli": lambda: timed_loop(
                    [
                        [*cc, op, str(f), "-o", str(work / f"c-{op}-{f.stem}.png")]
                        for f in samples
                        for op in ("blur", "sharpen", "edge")
                    ]  # fmt: skip
                ),
            },
        }
        if vips:
            cases["help"]["vips --help"] = lambda: timed([vips, "--help"])
            cases["small 64x64 blur"]["vips gaussblur"] = lambda: timed(
                [vips, "gaussblur", str(work / "s.png"), str(work / "v.png"), "2"]
            )
            cases["sample loop (18 calls)"]["vips (18 calls)"] = lambda: timed_loop(
                [
                    [vips, op, str(f), str(work / f"v-{op}-{f.stem}.png"), *extra]
                    for f in samples
                    for op, extra in (("gaussblur", ["2"]), ("sharpen", []), ("sobel", []))
                ]  # fmt: skip
            )
        im_cmd = (
            [im, str(work / "s.png"), "-gaussian-blur", "0x2", str(work / "m.png")] if im else []
        )
        if im and subprocess.run(im_cmd, capture_output=True).returncode == 0:
            cases["small 64x64 blur"]["ImageMagick -gaussian-blur"] = lambda: timed(im_cmd)
        elif im:
            print(f"{im}: does not run -gaussian-blur (not ImageMagick?); left out")
            im = None
        # the start-up under any command built on numpy, click and Pillow (one OpenBLAS
        # thread, as the convcli command has it)
        floor = [sys.executable, "-c", "import numpy, click, PIL.Image"]
        cases["small 64x64 blur"]["imports only (floor)"] = lambda: timed(floor)
        times: dict[str, dict[str, list[float]]] = {c: {k: [] for k in v} for c, v in cases.items()}
        for round_ in range(args.repeats + 1):
            for case, runs in cases.items():
                for name, fn in runs.items():
                    seconds = fn()  # type: ignore[operator]
                    if round_:  # round 0 is the warm-up
                        times[case][name].append(seconds)
    print(f"{'case':<24} {'command':<28} {'median s':>9} {'convcli / this':>15}")
    for case, runs in times.items():
        ours = statistics.median(runs["convcli"])
        for name, values in runs.items():
            med = statistics.median(values)
            ratio = "" if name == "convcli" else f"{ours / med:15.2f}"
            print(f"{case:<24} {name:<28} {med:9.3f} {ratio}")
    if not vips:
        print("vips: not installed (apt install libvips-tools)")


if __name__ == "__main__":
    main()
