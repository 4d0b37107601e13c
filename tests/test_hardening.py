"""Hardening: signals in the fork window, orphaned workers, other runs' temporaries,
the exit-code rule, control characters in what is printed, and the seed corpus of
hostile files (tests/data/hostile)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from convcli import atomic
from convcli.batch import JobSettings, plan_batch, run_batch
from convcli.kernels import builtin_kernel
from convcli.process import FilterOptions

RNG = np.random.default_rng(9)
ENV = {**os.environ, "NO_COLOR": "1"}


def images(folder: Path, n: int, size: int = 64) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = (RNG.random((size, size, 3)) * 255).astype(np.uint8)
        PILImage.fromarray(arr).save(folder / f"p{i:02d}.png", compress_level=1)


def dead_pid() -> int:
    """A process id that was a process of ours and is now gone (reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def temp_name(pid: int, host: str | None = None, tail: str = "abc123") -> str:
    return f"{atomic.TEMP_PREFIX}{host or atomic._host_tag()}-{pid}-{tail}{atomic.TEMP_SUFFIX}"


# --- 12: Ctrl-C while the workers start ----------------------------------------------

FORK_SIGINT = textwrap.dedent(
    """
    import os, signal, sys
    fired = []
    def before_fork():  # SIGINT in the fork window, as `strace -e inject=clone:signal=SIGINT`
        if not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)
    os.register_at_fork(before=before_fork)
    from convcli.cli import main
    main(sys.argv[1:], prog_name="convcli")
    """
)


def test_ctrl_c_in_the_fork_window_exits_130(tmp_path):
    images(tmp_path / "in", 6)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", FORK_SIGINT, "batch", str(tmp_path / "in"), "-o", str(out),
         "-k", "box", "--jobs", "2"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "interrupted" in proc.stderr
    assert not list(out.glob(".convcli-*")) if out.exists() else True


# --- 13: a killed parent, and temporaries of other runs -------------------------------


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                found.append(int(entry))
    return found


def running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_workers_end_soon_after_the_parent_is_killed(tmp_path):
    images(tmp_path / "in", 40, size=300)
    cmd = [sys.executable, "-m", "convcli", "batch", str(tmp_path / "in"), "-o",
           str(tmp_path / "out"), "-k", "gaussian:sigma=6", "--jobs", "2", "-q"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = children_of(proc.pid)
            time.sleep(0.02)
        assert len(workers) >= 2, "the batch never started its workers"
        proc.kill()  # SIGKILL, as the OOM killer does: the parent gets no chance to clean up
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(running(w) for w in workers):
            time.sleep(0.05)
        alive = [w for w in workers if running(w)]
        assert not alive, f"workers {alive} outlived their parent by 10 s"
    finally:
        proc.kill()
        for w in children_of(proc.pid):
            os.kill(w, signal.SIGKILL)


def test_only_temporaries_of_gone_writers_are_removed(tmp_path):
    gone = dead_pid()
    names = {
        "gone": temp_name(gone),
        "live": temp_name(os.getppid()),  # the test runner's parent: alive
        "this process": temp_name(os.getpid()),
        "other host": temp_name(gone, host="0badc0de" if atomic._host_tag() != "0badc0de" else "1"),
        "old style": f"{atomic.TEMP_PREFIX}k2j3h4{atomic.TEMP_SUFFIX}",
        "not ours": f"{atomic.TEMP_PREFIX}{atomic._host_tag()}-{gone}-x.txt",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    assert atomic.writer_gone(names["gone"])
    assert atomic.remove_stale_temporaries(tmp_path) == 1
    left = {p.name for p in tmp_path.iterdir()}
    assert left == set(names.values()) - {names["gone"]}


def test_a_batch_keeps_a_concurrent_runs_live_temporaries(tmp_path):
    images(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    live = out / temp_name(os.getppid())
    stale = out / temp_name(dead_pid())
    live.write_bytes(b"another run is writing this")
    stale.write_bytes(b"left by a killed run")
    plan = plan_batch(str(tmp_path / "in"), str(out))
    summary = run_batch(plan, JobSettings([builtin_kernel("box")], FilterOptions()), jobs=2)
    assert summary.count("processed") == 3
    assert live.read_bytes() == b"another run is writing this"
    assert not stale.exists()


def test_temporary_names_record_host_and_process(tmp_path):
    seen = []
    target = tmp_path / "x.bin"
    with atomic.open_atomically(target) as fh:
        seen = [p.name for p in tmp_path.iterdir()]
        fh.write(b"data")
        assert not atomic.writer_gone(seen[0])  # this process is writing it
    assert seen[0].startswith(atomic.temp_prefix())
    assert target.read_bytes() == b"data"


# --- 14: one exit-code rule -----------------------------------------------------------


def exit_code_cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    img = tmp / "img.png"
    PILImage.fromarray((RNG.random((8, 9, 3)) * 255).astype(np.uint8)).save(img)
    (tmp / "folder").mkdir()
    (tmp / "in").mkdir()
    PILImage.fromarray((RNG.random((8, 9, 3)) * 255).astype(np.uint8)).save(tmp / "in" / "a.png")
    (tmp / "bad.txt").write_text("1 2 x\n")
    (tmp / "afile").write_text("x")
    (tmp / "out").mkdir()
    (tmp / "out" / "a.png").write_text("an earlier output")
    t, o = str(tmp), str(tmp / "o.png")
    return [
        # 2: what was typed cannot work, whatever the files hold
        (["apply", str(img), "-k", "1 2 x", "-o", o], 2, "unknown kernel '1 2 x'"),
        (["apply", str(img), "-k", "gaussian:sigma=-1", "-o", o], 2, "sigma must be > 0"),
        (["apply", str(img), "-k", "box", "-o", f"{t}/o.xyz"], 2, "cannot tell the image format"),
        (["apply", str(img), "-k", "box"], 2, "missing -o/--output"),
        (
            ["batch", f"{t}/in", "-o", f"{t}/o2", "-k", "box", "--skip-existing", "--overwrite"],
            2,
            "not both",
        ),  # fmt: skip
        # 1: a file, the data or the system said no
        (["apply", f"{t}/missing.png", "-k", "box", "-o", o], 1, "missing.png: no such file"),
        (["apply", f"{t}/folder", "-k", "box", "-o", o], 1, "is named like an image file, but"),
        (["apply", f"{t}/in", f"{t}/in", "-k", "box", "-o", o], 2, "several inputs are written"),
        (["apply", str(img), "-k", f"{t}/bad.txt", "-o", o], 1, "bad.txt:1:"),
        (["apply", str(img), "-k", f"{t}/missing.txt", "-o", o], 1, "kernel file not found"),
        (["apply", str(img), "-k", "box", "-o", f"{t}/nodir/o.png"], 1, "does not exist"),
        (["apply", str(img), "-k", "box", "-o", str(img)], 1, "is the input file"),
        (["compare", f"{t}/missing.png", "-k", "box"], 1, "missing.png: no such file"),
        (["batch", f"{t}/nofolder", "-o", f"{t}/o2", "-k", "box"], 1, "does not exist"),
        (["batch", f"{t}/in", "-o", f"{t}/afile", "-k", "box"], 1, "not a folder"),
        (["batch", f"{t}/in", "-o", f"{t}/out", "-k", "box"], 1, "already exist"),
        (["batch", f"{t}/in", "-o", f"{t}/in/sub", "-k", "box"], 1, "inside it"),
        (["kernels", "export", "box", "-o", f"{t}/folder"], 1, "is a folder"),
    ]


def test_exit_codes_follow_one_rule(tmp_path):
    from click.testing import CliRunner

    from convcli.cli import main

    for args, code, message in exit_code_cases(tmp_path):
        result = CliRunner().invoke(main, args)
        err = result.stderr.strip()
        assert result.exit_code == code, (args, err)
        assert len(err.splitlines()) == 1 and err.startswith("Error: "), (args, err)
        assert message in err, (args, err)


# --- 15: control characters in names are escaped in what is printed -------------------


def test_control_characters_in_names_are_escaped_everywhere(tmp_path):
    src = tmp_path / "in"
    images(src, 1)
    (src / "p00.png").rename(src / "new\nline.png")
    (src / "bell\x07\x1b[31m.png").write_bytes(b"not a png")  # fails: its reason names it
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "convcli", "batch", str(src), "-o", str(out), "-k", "box"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "new\\nline.png" in proc.stderr and "new\nline" not in proc.stderr
    assert "bell\\x07\\x1b[31m.png" in proc.stderr
    assert "\x07" not in proc.stderr and "\x1b" not in proc.stderr
    assert (out / "new\nline.png").exists()  # the file itself keeps its name
    proc = subprocess.run(
        [sys.executable, "-m", "convcli", "apply", str(src / "bell\x07\x1b[31m.png"), "-k", "box",
         "-o", str(tmp_path / "x\ny.png")],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "bell\\x07\\x1b[31m.png" in err, err


# --- the seed corpus: every reproducer through the real command, fd 2 included ---------

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile"


def corpus_cases() -> list[tuple[str, str, int, str]]:
    cases = []
    for line in (HOSTILE / "CASES.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, role, code, message = (part.strip() for part in line.split("|", 3))
            cases.append((name, role, int(code), message))
    return cases


RUN_ALL = textwrap.dedent(
    """
    import json, os, resource, subprocess, sys
    def ceiling():  # no large allocation: 512 MiB of address space for the whole process
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
    # one interpreter per case (fd 2 is what is checked), started from here to save time
    out = []
    for argv in json.loads(sys.argv[1]):
        p = subprocess.run([sys.executable, "-m", "convcli", *argv], capture_output=True,
                           text=True, timeout=60, preexec_fn=ceiling)
        out.append([p.returncode, p.stderr])
    print(json.dumps(out))
    """
)


def test_seed_corpus_gives_one_line_each_and_writes_nothing(tmp_path):
    import json

    cases = corpus_cases()
    assert len(cases) >= 15
    # too big to keep in the corpus: made here (the audit's took 4.5 GiB and 1.1 GiB)
    (tmp_path / "one_row.txt").write_text(" ".join(["1"] * 10_000_000) + "\n")  # 20 MB
    (tmp_path / "long.im").write_text("3x3:" + ",".join(["1"] * 5_000_000))  # 10 MB
    generated = [
        (str(tmp_path / "one_row.txt"), "kernel", 1, "one_row.txt:1: a row holds more than 1025"),
        (str(tmp_path / "long.im"), "kernel", 1, "kernel 3x3 needs 9 values, got more"),
    ]
    good = tmp_path / "good.png"
    PILImage.fromarray((RNG.random((6, 7, 3)) * 255).astype(np.uint8)).save(good)
    argvs = []
    for name, *_ in cases:
        assert (HOSTILE / name).stat().st_size < 8192, name  # small reproducers only
    cases += generated
    for i, (name, role, _, _) in enumerate(cases):
        out = str(tmp_path / f"out{i}.{'jpg' if role == 'image.jpg' else 'png'}")
        if role.startswith("image"):  # named as given (relative to the corpus), as errors do
            argvs.append(["blur", name, "-o", out])
        else:
            argvs.append(["apply", str(good), "-k", name, "-o", out])
    proc = subprocess.run(
        [sys.executable, "-c", RUN_ALL, json.dumps(argvs)],
        capture_output=True, text=True, env=ENV, timeout=600, cwd=HOSTILE,
    )  # fmt: skip
    results = json.loads(proc.stdout)
    for i, ((name, _, code, message), (rc, err)) in enumerate(zip(cases, results, strict=True)):
        lines = err.strip().splitlines()
        assert rc == code, (name, err)
        assert len(lines) == 1, (name, err)  # one line: no traceback, no library chatter
        assert message in lines[0], (name, err)
        assert lines[0].startswith("Error: " if code else "Warning: "), (name, err)
        written = list(tmp_path.glob(f"out{i}.*"))
        assert bool(written) == (code == 0), name
    assert not list(tmp_path.glob(".convcli-*"))


def test_fd2_capture_nests_and_restores(tmp_path):
    from convcli._fdcapture import captured_stderr

    before = os.fstat(2)
    with captured_stderr() as outer:
        os.write(2, b"libfoo: first\n")
        with captured_stderr() as inner:
            os.write(2, b"libfoo: second\nlibfoo: second\n\n")
        assert inner == ["libfoo: second"]  # filled when its block ends, duplicates dropped
        os.write(2, b"libfoo: third\n")
    assert outer == ["libfoo: first", "libfoo: second", "libfoo: third"]
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)  # fd 2 given back


def _libtiff_seeds() -> list[bytes]:
    import io

    rgb = (np.arange(16 * 20 * 3) % 251).astype(np.uint8).reshape(16, 20, 3)
    seeds = []
    for compression in ("tiff_lzw", "tiff_adobe_deflate", "packbits", "jpeg", None):
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, "TIFF", compression=compression)
        seeds.append(buf.getvalue())
    return seeds


LIBTIFF_SEEDS = _libtiff_seeds()


def test_damaged_tiffs_never_reach_fd2(tmp_path, capfd):
    """Bit flips and cuts in TIFFs of every compression libtiff decodes for Pillow: only
    convcli's errors come out, and nothing is written to file descriptor 2 (libtiff's
    own warnings and errors are caught there)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from convcli.errors import ConvcliError
    from convcli.image_io import read_samples

    path = tmp_path / "f.tif"

    @settings(max_examples=250, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(
        seed=st.sampled_from(range(len(LIBTIFF_SEEDS))),
        flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
        cut=st.none() | st.floats(0.05, 1.0),
    )
    def check(seed, flips, cut):
        data = bytearray(LIBTIFF_SEEDS[seed])
        for at, value in flips:
            data[at % len(data)] = value
        if cut is not None:
            data = data[: max(8, int(len(data) * cut))]
        path.write_bytes(bytes(data))
        try:
            with read_samples(path, max_pixels=1_000_000) as stored:
                stored.samples[0 : stored.height]  # decode every row of a lazy reader
        except ConvcliError as exc:
            assert "\n" not in str(exc) and "f.tif" in str(exc)
        out, err = capfd.readouterr()
        assert err == "" and out == "", err

    check()


def test_the_seed_corpus_holds_only_its_listed_reproducers():
    """Every file in tests/data/hostile is a CASES.txt case (or its script): no stray
    fuzzer output slips in."""
    listed = {name for name, *_ in corpus_cases() if "/" not in name}
    present = {p.name for p in HOSTILE.iterdir()}
    assert present - listed == {"CASES.txt", "make_corpus.py"}
    assert listed <= present


class _FullDiskOnClose:
    """A file whose last flush, at close, fails as on a full disk (ENOSPC)."""

    def __init__(self, path, mode):
        self._fh = open(path, mode)  # noqa: SIM115 - closed in close()
        self.name = self._fh.name

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._fh.close()
        raise OSError(28, "No space left on device")


def test_a_failing_close_does_not_hide_the_error_that_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "open", _FullDiskOnClose, raising=False)
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="out.png: cannot write"):
        with atomic.open_atomically(target) as fh:
            fh.write(b"new")
            raise ValueError("out.png: cannot write (No space left on device)")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(OSError, match="No space left"):  # and a close that fails on its own
        with atomic.open_atomically(target) as fh:
            fh.write(b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_compare_save_results_reports_a_write_that_fails_at_the_end(tmp_path, monkeypatch):
    # the PNG writers' last flush failing (a full disk) was swallowed: exit 0, nothing written
    from click.testing import CliRunner

    from convcli import png_codec
    from convcli.cli import main

    def full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(png_codec.PngWriter, "close", full)
    src = tmp_path / "in.png"
    PILImage.fromarray(np.random.default_rng(1).integers(0, 256, (40, 30, 3), np.uint8)).save(src)
    out = tmp_path / "res"
    result = CliRunner().invoke(
        main, ["compare", str(src), "-k", "emboss", "--save-results", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: {out / 'in-convolve.png'}: cannot write (No space left on device)"
    ]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("ext", ["png", "tif", "jpg"])
def test_sigterm_mid_write_leaves_nothing_and_exits_143(tmp_path, ext):
    src = tmp_path / "in.png"
    arr = (RNG.random((1200, 1200, 3)) * 255).astype(np.uint8)
    PILImage.fromarray(arr).save(src, compress_level=0)
    np.save(tmp_path / "k.npy", RNG.random((31, 31)) / 480)  # slow enough to be caught
    out = tmp_path / "out"
    out.mkdir()
    (out / f"keep.{ext}").write_bytes(b"old")
    cmd = [sys.executable, "-m", "convcli", "apply", str(src), "-k", str(tmp_path / "k.npy"),
           "--backend", "direct", "-o", str(out / f"keep.{ext}")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + 60
    while not list(out.glob(".convcli-*")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the command finished before SIGTERM arrived")
    assert proc.returncode == 143, err
    assert err.decode() == "Error: terminated\n"
    assert sorted(p.name for p in out.iterdir()) == [f"keep.{ext}"]
    assert (out / f"keep.{ext}").read_bytes() == b"old"


def test_an_interrupt_just_after_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    # Ctrl-C or SIGTERM can land inside the function that makes the temporary file, after the
    # file exists and before its caller knows its name (a .part file was left behind)
    real_close = os.close

    def interrupted(fd):
        real_close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic.open_atomically(tmp_path / "out.png"):
            pass  # pragma: no cover - never reached
    monkeypatch.setattr(atomic.os, "close", real_close)
    assert list(tmp_path.iterdir()) == []
