"""``convcli compare`` against ``convcli apply`` on a 12-MP photo, whole commands.

    python benchmarks/bench_compare.py --repeats 5 [--kernels emboss,gaussian:sigma=8]

Makes a 4000x3000 JPEG (quality 92) from a sample photo in a temporary folder, then
for each kernel times, in turn within each round (one uncounted warm-up round first):

* ``apply -k K -o out.png`` (the reference: one filter, a PNG written by strips);
* ``compare -k K`` (the verdict and numbers only);
* ``compare -k K -o panel.png`` (with the panel: overview, loupe, flip row);
* ``compare -k K --save-results DIR`` (the three results written as PNGs by strips).

Each command runs as a child of a small helper process (as in bench_e2e.py), so that
its peak RSS (``os.wait4``) is its own.  It prints the median wall time, the largest
peak RSS, and each compare's ratios to apply from the same run (the issue's target:
at most 2x apply's time and peak memory).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _common import photo
from bench_e2e import start_runner, time_commands
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels", default="emboss,gaussian:sigma=8")
    parser.add_argument("--size", default="4000x3000", help="WxH of the test photo")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cli = [sys.executable, "-m", "convcli"]
    work = Path(tempfile.mkdtemp(prefix="convcli-bench-compare-"))
    try:
        jpg = work / "photo.jpg"
        Image.fromarray((photo(width, height) * 255 + 0.5).astype("uint8")).save(jpg, quality=92)
        run = start_runner(work / "stderr.txt")
        print(f"{width}x{height} RGB JPEG, median of {args.repeats} rounds, "
              "peak RSS max over rounds")  # fmt: skip
        print(f"{'kernel':<18} {'command':<24} {'median s':>9} {'peak MiB':>9} "
              f"{'time/apply':>11} {'mem/apply':>10}")  # fmt: skip
        for spec in args.kernels.split(","):
            res_dir = work / "res"
            cmds = {
                "apply -o out.png": [*cli, "apply", str(jpg), "-k", spec, "-o",
                                     str(work / "o.png")],
                "compare": [*cli, "compare", str(jpg), "-k", spec],
                "compare -o panel.png": [*cli, "compare", str(jpg), "-k", spec, "-o",
                                         str(work / "panel.png")],
                "compare --save-results": [*cli, "compare", str(jpg), "-k", spec,
                                           "--save-results", str(res_dir)],
            }  # fmt: skip
            res = time_commands(run, cmds, args.repeats)
            base_s, base_mib = res["apply -o out.png"]
            for label, (sec, mib) in res.items():
                print(f"{spec:<18} {label:<24} {sec:>9.3f} {mib:>9.0f} {sec / base_s:>11.2f} "
                      f"{mib / base_mib:>10.2f}")  # fmt: skip
        run([])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
