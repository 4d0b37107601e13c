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
