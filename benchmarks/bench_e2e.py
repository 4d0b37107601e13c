"""End to end: convcli against libvips, ImageMagick and OpenCV, whole commands and in memory.

    python benchmarks/bench_e2e.py --repeats 5 [--skip-im] [--big 20000] [--only blur_jpeg,batch]

Makes the inputs in a temporary folder from a sample photo (a 4000x3000 JPEG,
quality 92, and PNG, compress level 3; --quick: 2000x1500, one round, 10 batch
images of 512x512), then times, side by side:

* blur_jpeg: ``convcli blur --sigma 2`` against ``vips gaussblur`` (and
  ImageMagick ``-gaussian-blur 0x2`` unless --skip-im), JPEG to JPEG;
* sharpen_png: ``convcli apply -k sharpen`` against ``vips conv`` with the same
  3x3 matrix, PNG to PNG;
* uint8: in this process, ``convcli.filter_samples`` (direct backend) against
  ``cv2.filter2D`` / ``cv2.GaussianBlur`` (reflect border) and pyvips, uint8 to uint8;
* batch: ``convcli batch --jobs 2`` against one Python process looping with
  pyvips, and ``xargs -P2 vips gaussblur``;
* compare: ``convcli compare -k emboss`` (no panel) against ``convcli apply -k emboss``;
* big (only with --big N): an N x N RGB uncompressed TIFF, ``convcli blur``
  against ``vips gaussblur``, one round.

convcli's modules are byte-compiled first (``compileall``), as a regular ``pip install``
leaves them: an editable install under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile
every module's source in every run (about 50 ms of each command).  blur_jpeg also times
``python -c "import numpy, click, PIL.Image"`` (one OpenBLAS thread, as the command):
the start-up no Python CLI built on them can go below.

Commands run as child processes of a small helper (so that they do not inherit
this process's peak RSS), in turn within each round, each round starting one command
further on (one uncounted warm-up round first), and report the median wall time and
the largest peak RSS (``os.wait4``; for a tree of processes, the largest single
process in it).
Ratios are convcli / peer from the same run: above 1, convcli is slower or bigger.
Peers that are not installed are listed as such and skipped.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE

import numpy as np
from _common import interleaved_medians, photo
from PIL import Image

import convcli

CASES = ("blur_jpeg", "sharpen_png", "uint8", "batch", "compare", "big")
SHARPEN = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
Row = tuple[str, float | None, float | None, str, float | str | None, float | None]


RUNNER = r"""
import json, os, sys, time
from subprocess import DEVNULL, Popen


def run_process(cmd):
    # wall seconds, peak RSS in MiB (wait4) and exit code of cmd; its stderr into argv[1]
    with open(sys.argv[1], "wb") as err:
        t0 = time.perf_counter()
        proc = Popen(cmd, stdin=DEVNULL, stdout=DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, proc.returncode


for line in sys.stdin:
    print(json.dumps(run_process(json.loads(line))), flush=True)
"""


def start_runner(err: Path) -> Callable[[list[str]], tuple[float, float]]:
    """``run(cmd) -> (seconds, peak MiB)``, the command started by a small helper process.

    Linux carries the forking process's peak RSS into the child at exec, so commands
    forked from this (big) process would all report at least its peak.
    """
    runner = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", RUNNER, str(err)], stdin=PIPE, stdout=PIPE, text=True
    )

    def run(cmd: list[str]) -> tuple[float, float]:
        assert runner.stdin and runner.stdout
        if not cmd:  # an empty command stops the runner
            runner.stdin.close()
            return runner.wait(), 0.0
        print(json.dumps(cmd), file=runner.stdin, flush=True)
        seconds, mib, code = json.loads(runner.stdout.readline())
        if code:
            text = err.read_text(errors="replace").strip()
            raise SystemExit(f"command failed ({code}): {shlex.join(cmd)}\n{text}")
        return seconds, mib

    return run


def time_commands(run, cmds: dict[str, list[str]], repeats: int, warmup: bool = True) -> dict:
    """``{label: (median s, max MiB)}``, the commands run in turn within each round, each
    round starting one command further on, so that no command always runs right after the
    same other one (a long ImageMagick run, say, leaves the machine warm or its memory to
    be reclaimed)."""
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in cmds}
    items = list(cmds.items())
    for rnd in range(repeats + warmup):
        for label, cmd in items[rnd % len(items) :] + items[: rnd % len(items)]:
            result = run(cmd)
            if rnd or not warmup:
                samples[label].append(result)
    return {
        label: (statistics.median(s for s, _ in v), max(m for _, m in v))
        for label, v in samples.items()
    }


def imagemagick() -> str | None:
    """``magick`` or ``convert``, when it is ImageMagick."""
    for name in ("magick", "convert"):
        exe = shutil.which(name)
        if exe and "ImageMagick" in output([exe, "-version"]):
            return exe
    return None


def optional(module: str):
    try:
        return __import__(module)
    except ImportError:
        return None


def output(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


def versions(vips: str | None, im: str | None) -> str:
    cv2, pyvips = optional("cv2"), optional("pyvips")
    libvips = ".".join(str(pyvips.version(i)) for i in range(3)) if pyvips else ""
    parts = [
        f"convcli {convcli.__version__}",
        f"numpy {np.__version__}",
        f"pillow {Image.__version__}",
        f"cv2 {cv2.__version__}" if cv2 else "cv2 not installed",
        f"pyvips {pyvips.__version__} (libvips {libvips})" if pyvips else "pyvips not installed",
        output([vips, "--version"]) if vips else "vips CLI not installed",
        " ".join(output([im, "-version"]).split()[1:3]) if im else "ImageMagick not installed",
    ]
    return ", ".join(parts)


def make_batch(folder: Path, count: int, size: int) -> None:
    """``count`` different ``size x size`` JPEGs cut from one upscaled photo (as bench_batch)."""
    big = np.rint(photo(size + count * 7, size + count * 5) * 255).astype(np.uint8)
    for i in range(count):
        crop = big[i * 5 : i * 5 + size, i * 7 : i * 7 + size]
        Image.fromarray(crop).save(folder / f"img{i:03d}.jpg", quality=90)


def strips(src: np.ndarray, n: int, rows: int) -> Iterator[bytes]:
    """An ``n x n`` tiling of ``src``, ``rows`` rows at a time, as bytes (never the whole image)."""
    cols = np.arange(n) % src.shape[1]
    for y in range(0, n, rows):
        idx = np.arange(y, min(y + rows, n)) % src.shape[0]
        yield np.ascontiguousarray(src[idx][:, cols]).tobytes()


def subprocess_rows(run, case: str, cmds: dict[str, list[str] | str | None], repeats, warmup=True):
    """Rows of ``case``: the first command (convcli) against each of the others."""
    runnable = {label: cmd for label, cmd in cmds.items() if isinstance(cmd, list)}
    print(f"  running {case} ...", file=sys.stderr, flush=True)
    res = time_commands(run, runnable, repeats, warmup)
    base_s, base_mib = res[next(iter(runnable))]
    rows: list[Row] = []
    for label, cmd in list(cmds.items())[1:]:
        if isinstance(cmd, list):
            rows.append((case, base_s, base_mib, label, *res[label]))
        else:
            rows.append((case, base_s, base_mib, label, cmd or "not installed", None))
    return rows


def uint8_rows(u8: np.ndarray, repeats: int) -> list[Row]:
    cv2, pyvips = optional("cv2"), optional("pyvips")
    opts = convcli.FilterOptions(backend="direct")
    sharp, gauss = convcli.builtin_kernel("sharpen"), convcli.builtin_kernel("gaussian", sigma=2)
    k3, reflect = np.array(SHARPEN, np.float32), cv2 and cv2.BORDER_REFLECT
    if pyvips:
        pyvips.cache_set_max(0)  # no reuse of the previous call's result
        mask, (h, w, c) = pyvips.Image.new_from_array(SHARPEN), u8.shape

    def vimg():
        return pyvips.Image.new_from_memory(u8.data, w, h, c, "uchar")

    runs: dict[str, dict[str, Callable[[], object] | None]] = {
        "uint8 sharpen 3x3": {
            "convcli": lambda: convcli.filter_samples(u8, [sharp], opts),
            "cv2.filter2D": cv2 and (lambda: cv2.filter2D(u8, -1, k3, borderType=reflect)),
            "pyvips conv": pyvips and (lambda: vimg().conv(mask).write_to_memory()),
        },
        "uint8 gaussian s=2": {
            "convcli": lambda: convcli.filter_samples(u8, [gauss], opts),
            "cv2.GaussianBlur": cv2
            and (lambda: cv2.GaussianBlur(u8, (13, 13), 2, borderType=reflect)),
            "pyvips gaussblur": pyvips and (lambda: vimg().gaussblur(2).write_to_memory()),
        },
    }
    rows: list[Row] = []
    for case, fns in runs.items():
        print(f"  running {case} ...", file=sys.stderr, flush=True)
        ms = interleaved_medians({k: f for k, f in fns.items() if f}, repeats)
        for label in list(fns)[1:]:
            peer = ms[label] / 1000 if label in ms else "not installed"
            rows.append((case, ms["convcli"] / 1000, None, label, peer, None))
    return rows


def print_table(rows: list[Row]) -> None:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    def ratio(a, b):
        return f"{a / b:.2f}x" if isinstance(a, float) and isinstance(b, float) else "-"

    header = (
        f"{'case':<20} {'convcli s':>9} {'convcli MiB':>11}  {'peer':<22} {'peer s':>13} "
        f"{'peer MiB':>8} {'time ratio':>10} {'memory ratio':>12}"
    )
    print(header)
    print("-" * len(header))
    for case, cs, cm, peer, ps, pm in rows:
        ps_text = ps if isinstance(ps, str) else num(ps, ".3f")
        print(
            f"{case:<20} {num(cs, '.3f'):>9} {num(cm, '.0f'):>11}  {peer:<22} {ps_text:>13} "
            f"{num(pm, '.0f'):>8} {ratio(cs, ps):>10} {ratio(cm, pm):>12}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 round, 2000x1500 images")
    parser.add_argument("--skip-im", action="store_true", help="leave out ImageMagick (slow)")
    parser.add_argument("--big", type=int, default=0, metavar="N", help="add an N x N TIFF case")
    parser.add_argument("--only", help=f"comma list of cases: {','.join(CASES)}")
    args = parser.parse_args()
    cases = set(args.only.split(",")) if args.only else {c for c in CASES if c != "big" or args.big}
    if cases - set(CASES):
        parser.error(f"unknown case(s): {', '.join(sorted(cases - set(CASES)))}")
    if "big" in cases and not args.big:
        parser.error("the big case needs --big N")
    repeats = 1 if args.quick else args.repeats
    width, height = (2000, 1500) if args.quick else (4000, 3000)
    n_batch, batch_size = (10, 512) if args.quick else (50, 1024)
    vips, im = shutil.which("vips"), None if args.skip_im else imagemagick()
    cli = ["convcli"] if shutil.which("convcli") else [sys.executable, "-m", "convcli"]

    def convcli_cmd(*parts: object) -> list[str]:
        return cli + [str(p) for p in parts]

    def vips_cmd(*parts: object) -> list[str] | None:
        return [vips, *map(str, parts)] if vips else None

    compileall.compile_dir(Path(convcli.__file__).parent, quiet=1)
    work = Path(tempfile.mkdtemp(prefix="convcli-bench-e2e-"))
    run = start_runner(work / "stderr.txt")
    try:
        print(
            f"{len(os.sched_getaffinity(0))} cores; {versions(vips, im)}\n{width}x{height} RGB, "
            f"median of {repeats} round(s), peak RSS the max over rounds (`true`: "
            f"{run(['true'])[1]:.0f} MiB)",
            flush=True,
        )
        u8 = np.rint(photo(width, height) * 255).astype(np.uint8)
        jpg, png = work / "in.jpg", work / "in.png"
        Image.fromarray(u8).save(jpg, quality=92)
        Image.fromarray(u8).save(png, compress_level=3)
        rows: list[Row] = []
        if "blur_jpeg" in cases:
            blur_im = [im, str(jpg), "-gaussian-blur", "0x2", str(work / "m.jpg")] if im else None
            imports = "import numpy, click, PIL.Image"  # with the command's one OpenBLAS thread
            floor = ["env", "OPENBLAS_NUM_THREADS=1", sys.executable, "-c", imports]
            cmds = {
                "convcli": convcli_cmd("blur", jpg, "-o", work / "c.jpg", "--sigma", 2),
                "vips gaussblur": vips_cmd("gaussblur", jpg, work / "v.jpg", 2),
                "imagemagick": blur_im or ("skipped" if args.skip_im else None),
                "imports only (floor)": floor,
            }
            rows += subprocess_rows(run, "blur_jpeg s=2", cmds, repeats)
        if "sharpen_png" in cases:
            mat = work / "sharpen.mat"
            mat.write_text("3 3 1 0\n" + "".join(" ".join(map(str, r)) + "\n" for r in SHARPEN))
            cmds = {
                "convcli": convcli_cmd("apply", png, "-k", "sharpen", "-o", work / "c.png"),
                "vips conv": vips_cmd("conv", png, work / "v.png", mat),
            }
            rows += subprocess_rows(run, "sharpen_png 3x3", cmds, repeats)
        if "uint8" in cases:
            rows += uint8_rows(u8, repeats)
        if "batch" in cases:
            src, c_out, p_out, x_out = (work / name for name in ("in", "c", "p", "x"))
            for folder in (src, p_out, x_out):
                folder.mkdir()
            make_batch(src, n_batch, batch_size)
            loop = (  # one process: its start-up and pyvips import count too
                "import pathlib, pyvips, sys\n"
                "src, out = map(pathlib.Path, sys.argv[1:])\n"
                "for f in sorted(src.glob('*.jpg')):\n"
                "    image = pyvips.Image.new_from_file(str(f))\n"
                "    image.gaussblur(2).write_to_file(str(out / f.name))\n"
            )
            q = shlex.quote
            xargs = f"cd {q(str(src))} && ls *.jpg | xargs -P2 -I{{}} {q(vips or 'vips')} "
            xargs += f"gaussblur {{}} {q(str(x_out))}/{{}} 2"
            batch = ["batch", src, "-o", c_out, "-k", "gaussian:sigma=2", "--jobs", 2]
            cmds = {
                "convcli": convcli_cmd(*batch, "--quiet", "--overwrite"),
                "pyvips loop (python)": [sys.executable, "-c", loop, str(src), str(p_out)]
                if optional("pyvips")
                else None,
                "xargs -P2 vips": ["sh", "-c", xargs] if vips else None,
            }
            rows += subprocess_rows(run, f"batch {n_batch}x{batch_size}px", cmds, repeats)
        if "compare" in cases:
            cmds = {
                "convcli compare": convcli_cmd("compare", jpg, "-k", "emboss"),
                "convcli apply": convcli_cmd("apply", jpg, "-k", "emboss", "-o", work / "e.png"),
            }
            rows += subprocess_rows(run, "compare vs apply", cmds, repeats)
        if "big" in cases:
            import tifffile

            n, tif = args.big, work / "big.tif"
            print(f"  writing {n}x{n} TIFF ...", file=sys.stderr, flush=True)
            tifffile.imwrite(
                tif, data=strips(u8, n, 256), shape=(n, n, 3), dtype=np.uint8,
                rowsperstrip=256, photometric="rgb",
            )  # fmt: skip
            cmds = {
                "convcli": convcli_cmd(
                    "blur", tif, "-o", work / "out.tif", "--sigma", 2, "--max-pixels", 0
                ),
                "vips gaussblur": vips_cmd("gaussblur", tif, work / "out_v.tif", 2),
            }
            rows += subprocess_rows(run, f"big {n}x{n} tif", cmds, 1, warmup=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        run([])
    print_table(rows)


if __name__ == "__main__":
    main()
