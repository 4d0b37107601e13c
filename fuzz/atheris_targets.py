"""Coverage-guided fuzzing of convcli's readers with atheris (opt-in, not part of CI).

    pip install atheris
    python fuzz/atheris_targets.py image  /tmp/fuzz-image  tests/data/hostile -max_total_time=600
    python fuzz/atheris_targets.py kernel /tmp/fuzz-kernel tests/data/hostile -max_total_time=600

The first argument picks the target; the rest go to libFuzzer.  libFuzzer writes the inputs
it finds into the *first* corpus folder, so give a scratch folder first and the seed corpus
after it (read only), never the seed corpus alone.  A finding is any exception other than
convcli's own errors; libFuzzer also reports hangs (-timeout) and large allocations
(-rss_limit_mb, default 2048).  Add what it finds to tests/data/hostile with its one line.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from convcli.errors import ConvcliError
    from convcli.image_io import read_samples
    from convcli.kernel_io import load_kernel, load_kernel_file

_DIR = tempfile.mkdtemp(prefix="convcli-fuzz-")


def image_target(data: bytes) -> None:
    path = os.path.join(_DIR, "input")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        with read_samples(path, max_pixels=4_000_000) as stored:
            stored.samples[0 : stored.height]  # decode every row of a lazy reader
    except ConvcliError:
        pass


def kernel_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    ext = fdp.PickValueInList([".txt", ".csv", ".mat", ".im", ".npy", ".kernel"])
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    path = os.path.join(_DIR, "k" + ext)
    with open(path, "wb") as fh:
        fh.write(payload)
    for load in (
        lambda: load_kernel_file(path),
        lambda: load_kernel(payload.decode("latin-1") or "x"),
    ):
        try:
            load()
        except ConvcliError:
            pass


def main() -> None:
    targets = {"image": image_target, "kernel": kernel_target}
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: {sys.argv[0]} image|kernel [libFuzzer options and corpus folders]")
    target = targets[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
