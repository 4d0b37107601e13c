"""How long ``convcli identify`` takes on a 12-MP pair, against one filter of the same image.

The output is made by OpenCV's ``cv2.filter2D`` when it is installed (else by convcli), from a
real photo resized to 4000x3000.  Printed, as interleaved medians of one run:

* ``identify``: the whole search (sample stages and the winner confirmed on every pixel);
* ``one filter``: ``convcli.correlate`` of the image once (float64, as identify filters);
* the ratio, and what scoring every variant on the whole image would cost instead (the
  number of variants scored times one filter, a lower bound: each also needs its own mapping,
  rounding and comparison).

    python benchmarks/bench_identify.py --repeats 3
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import interleaved_medians, photo

from convcli import Kernel, correlate, from_array
from convcli.identify import identify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()

    levels = np.rint(photo(args.width, args.height) * 255).astype(np.uint8)
    kernel = Kernel(np.arange(1, 10).reshape(3, 3) / 45, name="[1..9]/45")
    try:
        import cv2

        out = cv2.filter2D(levels, -1, kernel.weights)
        maker = f"cv2.filter2D (OpenCV {cv2.__version__})"
    except ImportError:
        raw = correlate(levels.astype(np.float64), kernel, mode="mirror", dtype=np.float64)
        out = np.floor(np.clip(raw, 0, 255) + 0.5).astype(np.uint8)
        maker = "convcli correlate (OpenCV not installed)"
    source = from_array(levels / 255.0, depth="8")
    output = from_array(out / 255.0, depth="8")
    found = identify(source, output, kernel)
    src64 = levels.astype(np.float64)
    times = interleaved_medians(
        {
            "identify": lambda: identify(source, output, kernel),
            "one filter": lambda: correlate(src64, kernel, mode="mirror", dtype=np.float64),
        },
        args.repeats,
    )
    mp = args.width * args.height / 1e6
    print(f"{args.width}x{args.height} RGB ({mp:.1f} MP), kernel {kernel.name}, output by {maker}")
    print(f"found: {found.best.candidate.describe(kernel)} -> {found.verdict}")
    print(f"{found.candidates} variants scored on {found.sampled_rows} sampled rows")
    print(f"identify    {times['identify']:8.0f} ms (median of {args.repeats})")
    print(f"one filter  {times['one filter']:8.0f} ms")
    print(f"identify / one filter: {times['identify'] / times['one filter']:.1f}x")
    every = found.candidates * times["one filter"] / 1000
    print(
        f"every variant on the whole image: >= {every:.0f} s "
        f"({every * 1000 / times['identify']:.0f}x the staged search)"
    )


if __name__ == "__main__":
    main()
