"""convcli batch: planning, safety, failures, parallel determinism, interruption, Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

import convcli.batch
from convcli.batch import JobSettings, plan_batch, run_batch, run_job
from convcli.cli import main
from convcli.errors import PathError
from convcli.kernels import builtin_kernel
from convcli.process import FilterOptions

RNG = np.random.default_rng(17)


def make_tree(root: Path, n: int = 4, size: int = 24) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    for i in range(n):
        arr = (RNG.random((size, size + i, 3)) * 255).astype(np.uint8)
        folder = [root, root / "sub", root / "sub" / "deeper"][i % 3]
        PILImage.fromarray(arr).save(folder / f"img{i}.png")
    PILImage.fromarray((RNG.random((10, 12)) * 255).astype(np.uint8)).save(root / "grey.jpg")
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "data.csv").write_text("1,2")


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def invoke(*args):
    return CliRunner().invoke(main, ["batch", *[str(a) for a in args]])


def test_plan_mirrors_structure_and_counts_non_images(tmp_path):
    src = tmp_path / "in"
    make_tree(src)
    plan = plan_batch(src, tmp_path / "out", recursive=True, fmt="png")
    rel = sorted(str(Path(j.output).relative_to(tmp_path / "out")) for j in plan.jobs)
    assert rel == ["grey.png", "img0.png", "img3.png", "sub/deeper/img2.png", "sub/img1.png"]
    assert plan.ignored == 2
    flat = plan_batch(src, tmp_path / "out")
    assert sorted(Path(j.output).name for j in flat.jobs) == ["grey.jpg", "img0.png", "img3.png"]
    only = plan_batch(src, tmp_path / "out", recursive=True, patterns=["img*"])
    assert len(only.jobs) == 4 and only.ignored == 2 and only.excluded == 1  # grey.jpg


def test_name_collision_is_reported_before_any_work(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    PILImage.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "a.png")
    PILImage.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "a.jpg")
    result = invoke(src, "-o", tmp_path / "out", "-k", "box", "--format", "png")
    assert result.exit_code == 1
    assert "'a.jpg' and 'a.png' would both be written to" in result.stderr
    assert not (tmp_path / "out").exists()


def test_output_inside_input_is_refused_even_through_a_symlink(tmp_path):
    src = tmp_path / "in"
    make_tree(src, n=1)
    for out in (src, src / "sub" / "out"):
        result = invoke(src, "-o", out, "-k", "box")
        assert result.exit_code == 1
        assert "is the input folder or lies inside it" in result.stderr
    link = tmp_path / "link"
    link.symlink_to(src / "sub")
    result = invoke(src, "-o", link / "new", "-k", "box")
    assert result.exit_code == 1 and "lies inside it" in result.stderr
    assert not (src / "sub" / "new").exists()


def test_end_to_end_inputs_untouched_existing_outputs_rules(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_tree(src)
    before = snapshot(src)
    result = invoke(
        src,
        "-o",
        out,
        "-k",
        "gaussian:sigma=1",
        "-r",
        "--format",
        "png",
        "--jobs",
        "1",
        "--report",
        tmp_path / "r.json",
    )
    assert result.exit_code == 0, result.output
    assert snapshot(src) == before
    assert len(list(out.rglob("*.png"))) == 5
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"processed": 5, "skipped": 0, "failed": 0}
    assert report["kernels"][0]["name"] == "gaussian(sigma=1.0)"
    assert report["options"]["mode"] == "reflect" and report["ignored_files"] == 2
    assert {"numpy", "scipy", "pillow", "python"} <= set(report["versions"])
    assert all(f["read_s"] >= 0 and f["status"] == "processed" for f in report["files"])
    # existing outputs: refused, skipped, or replaced
    result = invoke(src, "-o", out, "-k", "box", "-r", "--format", "png")
    assert result.exit_code == 1 and "5 output(s) already exist" in result.stderr
    first = snapshot(out)
    result = invoke(src, "-o", out, "-k", "box", "-r", "--format", "png", "--skip-existing")
    assert result.exit_code == 0 and snapshot(out) == first
    result = invoke(src, "-o", out, "-k", "box", "-r", "--format", "png", "--overwrite")
    assert result.exit_code == 0 and snapshot(out) != first


def test_a_bad_image_does_not_stop_the_batch(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_tree(src, n=3)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    data = (src / "img0.png").read_bytes()
    (src / "truncated.png").write_bytes(data[: len(data) // 2])
    result = invoke(src, "-o", out, "-k", "box", "--report", tmp_path / "r.json", "-j", "2")
    assert result.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"processed": 2, "skipped": 0, "failed": 2}
    reasons = {
        Path(f["input"]).name: f["reason"] for f in report["files"] if f["status"] == "failed"
    }
    assert set(reasons) == {"broken.png", "truncated.png"}
    assert all(str(src) in r for r in reasons.values())
    assert "failed: " in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["grey.jpg", "img0.png"]


def test_a_write_failure_is_reported_and_leaves_no_partial_file(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_tree(src, n=1)
    (out / "img0.png").mkdir(parents=True)  # the destination is a folder: the write must fail
    result = invoke(src, "-o", out, "-k", "box", "--overwrite")
    assert result.exit_code == 1
    assert "img0.png: is a directory" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["grey.jpg", "img0.png"]
    assert not list(out.glob(".convcli-*"))


def test_jobs_1_and_2_are_byte_identical(tmp_path):
    src = tmp_path / "in"
    make_tree(src, n=6)
    for jobs in ("1", "2"):
        result = invoke(
            src, "-o", tmp_path / f"out{jobs}", "-k", "sharpen", "-r", "-j", jobs, "--quiet"
        )
        assert result.exit_code == 0
        assert result.stderr == ""  # --quiet: nothing but errors
    assert snapshot(tmp_path / "out1") == snapshot(tmp_path / "out2")


def test_library_run_batch_with_callback(tmp_path):
    src = tmp_path / "in"
    make_tree(src, n=2)
    plan = plan_batch(src, tmp_path / "out")
    seen = []
    settings = JobSettings((builtin_kernel("box"),), FilterOptions())
    summary = run_batch(plan, settings, jobs=2, on_result=seen.append)
    assert summary.count("processed") == 2 and len(seen) == 2
    with pytest.raises(PathError, match="already exist"):
        run_batch(plan_batch(src, tmp_path / "out"), settings)


def test_sigint_mid_batch_then_resume_gives_identical_outputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(24):
        arr = (RNG.random((400, 400, 3)) * 255).astype(np.uint8)
        PILImage.fromarray(arr).save(src / f"p{i:02d}.png", compress_level=1)
    # enough work per image (a 2-D 25x25 kernel too) that the batch is still running when
    # the interrupt comes, even on a loaded machine
    args = ["-k", "gaussian:sigma=3", "-k", "log:sigma=3", "--range", "abs", "--jobs", "2",
            "--compress-level", "9"]  # fmt: skip
    reference = tmp_path / "ref"
    assert invoke(src, "-o", reference, *args, "--quiet").exit_code == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "convcli", "batch", str(src), "-o", str(out), *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"}
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists() and len(list(out.glob("*.png"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    done = sorted(out.glob("*.png"))
    assert proc.returncode == 130, err.decode()
    assert 3 <= len(done) < 24  # interrupted mid-batch
    assert "batch summary" in err.decode()  # the summary, not just an error line
    assert "yes: rerun with --skip-existing to finish" in err.decode()
    assert not list(out.glob(".convcli-*"))  # no partial files
    for p in done:  # whatever was written is complete
        assert p.read_bytes() == (reference / p.name).read_bytes()
    result = invoke(src, "-o", out, *args, "--skip-existing", "--quiet")
    assert result.exit_code == 0
    assert snapshot(out) == snapshot(reference)


def test_dask_local_cluster_matches_local_executor(tmp_path):
    pytest.importorskip("distributed")
    src = tmp_path / "in"
    make_tree(src, n=4)
    (src / "broken.png").write_bytes(b"garbage")
    local = invoke(src, "-o", tmp_path / "local", "-k", "emboss", "-r", "--quiet")
    assert local.exit_code == 1  # the broken image
    result = invoke(
        src,
        "-o",
        tmp_path / "dask",
        "-k",
        "emboss",
        "-r",
        "--executor",
        "dask",
        "--jobs",
        "2",
        "--report",
        tmp_path / "d.json",
    )
    assert result.exit_code == 1, result.output
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "local")
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["counts"] == {"processed": 5, "skipped": 0, "failed": 1}
    assert (
        "not an image file" in [f for f in report["files"] if f["status"] == "failed"][0]["reason"]
    )


def test_scheduler_needs_dask_executor(tmp_path):
    src = tmp_path / "in"
    make_tree(src, n=1)
    result = invoke(src, "-o", tmp_path / "o", "-k", "box", "--scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --scheduler goes with --executor dask"


def test_dask_existing_scheduler_by_address(tmp_path):
    distributed = pytest.importorskip("distributed")
    src = tmp_path / "in"
    make_tree(src, n=3)
    local = invoke(src, "-o", tmp_path / "local", "-k", "motion:length=5,angle=30", "-r", "-q")
    assert local.exit_code == 0
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = invoke(
            src,
            "-o",
            tmp_path / "remote",
            "-k",
            "motion:length=5,angle=30",
            "-r",
            "--executor",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
        )
        assert result.exit_code == 0, result.output
        # the cluster was the user's: the batch must leave it running
        with distributed.Client(cluster.scheduler_address) as client:
            assert len(client.scheduler_info()["workers"]) == 2
    assert "dask executor" in result.stderr
    assert snapshot(tmp_path / "remote") == snapshot(tmp_path / "local")


def test_unreachable_dask_scheduler_is_one_clear_line(tmp_path):
    pytest.importorskip("distributed")
    src = tmp_path / "in"
    make_tree(src, n=1)
    result = invoke(
        src, "-o", tmp_path / "o", "-k", "box", "--executor", "dask", "--scheduler",
        "tcp://127.0.0.1:9",
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: cannot reach the Dask scheduler 'tcp://127.0.0.1:9'")
    assert "Traceback" not in result.stderr
    assert not any(p.is_file() for p in (tmp_path / "o").rglob("*"))  # nothing written


def test_an_input_folder_inside_the_output_folder_cannot_be_overwritten(tmp_path):
    # convcli batch o/in -o o -r: o/in/in/a.png would be written to o/in/a.png, an input
    outer = tmp_path / "o"
    src = outer / "in"
    (src / "in").mkdir(parents=True)
    PILImage.fromarray(np.full((4, 4), 10, np.uint8)).save(src / "a.png")
    PILImage.fromarray(np.full((4, 4), 200, np.uint8)).save(src / "in" / "a.png")
    before = snapshot(outer)
    result = invoke(src, "-o", outer, "-k", "box", "-r", "--overwrite")
    assert result.exit_code == 1
    assert "would be written to" in result.stderr and "inside the input folder" in result.stderr
    assert snapshot(outer) == before  # nothing written, nothing overwritten


def test_a_link_in_the_output_tree_into_the_input_is_refused(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    PILImage.fromarray(np.full((4, 4), 10, np.uint8)).save(src / "sub" / "deep.png")
    out.mkdir()
    (out / "sub").symlink_to(src / "sub")
    before = snapshot(src)
    result = invoke(src, "-o", out, "-k", "box", "-r", "--overwrite")
    assert result.exit_code == 1 and "inside the input folder" in result.stderr
    assert snapshot(src) == before


def test_a_decoder_crash_is_one_failed_file_not_the_end_of_the_batch(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_tree(src, n=2)
    crash = Path(__file__).parent / "data" / "corrupt_tiff_missing_dimensions.tif"
    (src / "crash.tif").write_bytes(crash.read_bytes())
    result = invoke(src, "-o", out, "-k", "box", "-j", "2", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"processed": 2, "skipped": 0, "failed": 1}
    failed = [f for f in report["files"] if f["status"] == "failed"]
    assert failed[0]["reason"] == f"{src / 'crash.tif'}: cannot decode image (Missing dimensions)"
    assert "batch summary" in result.stderr


def test_unexpected_errors_in_a_job_are_a_failed_result(tmp_path, monkeypatch):
    from convcli.pipeline.engine import Stream

    src = tmp_path / "in"
    make_tree(src, n=1)

    def boom(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Stream, "_strip", boom)
    plan = plan_batch(src, tmp_path / "out")
    result = run_job(plan.jobs[0], JobSettings((builtin_kernel("box"),), FilterOptions()))
    assert result.status == "failed"
    assert result.reason == (
        f"{plan.jobs[0].input}: unexpected error (ZeroDivisionError: division by zero)"
    )
    out = Path(plan.jobs[0].output)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial file


def _run_or_die(job, settings):
    # a job function for the pool's (forked) workers: dies on one image, as if killed by
    # the out-of-memory killer, and runs the others as usual
    if job.input.endswith("die.png"):
        os._exit(9)
    return run_job(job, settings)


def test_a_worker_that_dies_fails_its_images_and_the_batch_goes_on(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "die", "c", "d", "e"):
        PILImage.fromarray(np.full((6, 6), 50, np.uint8)).save(src / f"{name}.png")
    monkeypatch.setattr(convcli.batch, "run_job", _run_or_die)
    plan = plan_batch(src, tmp_path / "out")
    settings = JobSettings((builtin_kernel("box"),), FilterOptions())
    summary = run_batch(plan, settings, jobs=2)
    by_name = {Path(r.input).name: r for r in summary.results}
    assert sorted(by_name) == ["a.png", "b.png", "c.png", "d.png", "die.png", "e.png"]
    assert by_name["die.png"].status == "failed"
    assert by_name["die.png"].reason == convcli.batch.WORKER_DIED
    # the images in flight with it are run again, one by one: only the killer fails
    assert [n for n, r in by_name.items() if r.status == "failed"] == ["die.png"]
    written = {p.name for p in (tmp_path / "out").iterdir()}  # and no temporary left behind
    assert written == {n for n, r in by_name.items() if r.status == "processed"}


def test_results_are_byte_identical_whatever_the_jobs_on_the_fft_path(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        arr = (RNG.random((90, 70)) * 65535).astype(np.uint16)
        PILImage.fromarray(arr).save(src / f"g{i}.png")  # 16-bit: one level is 1/65535
    for jobs in ("1", "2"):
        result = invoke(
            src, "-o", tmp_path / f"o{jobs}", "-k", "log:sigma=6", "--backend", "fft", "-j", jobs
        )
        assert result.exit_code == 0, result.output
    assert snapshot(tmp_path / "o1") == snapshot(tmp_path / "o2")


def test_options_and_paths_that_cannot_work_are_refused_before_any_work(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_tree(src, n=2)
    cases = [
        (["--range", "none", "--depth", "8"], "range policy 'none' is only for float output"),
        (["--report", tmp_path / "nodir" / "r.json"], "report folder"),
        (["--report", src / "img0.png"], "the report would be written inside the input folder"),
    ]
    for extra, message in cases:
        result = invoke(src, "-o", out, "-k", "box", *extra)
        assert result.exit_code == (2 if extra[0] == "--range" else 1), (extra, result.output)
        assert message in result.stderr
        assert not out.exists()
    (tmp_path / "afile").write_text("x")
    result = invoke(src, "-o", tmp_path / "afile" / "out", "-k", "box")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"Error: {tmp_path / 'afile' / 'out'}: cannot create")


def test_an_unreadable_sub_folder_is_a_failure_and_the_rest_goes_on(tmp_path, monkeypatch):
    src = tmp_path / "in"
    make_tree(src, n=4)
    locked = str(src / "sub" / "deeper")
    real_scandir = os.scandir

    def scandir(path):
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = invoke(src, "-o", tmp_path / "out", "-k", "box", "-r", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"processed": 4, "skipped": 0, "failed": 1}
    assert f"failed: {locked}: cannot list folder (Permission denied)" in result.stderr


def test_counts_warnings_quiet_and_the_report_settings(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    make_tree(src, n=2)
    frames = [PILImage.fromarray(np.full((5, 5), v, np.uint8)) for v in (0, 120, 240)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    (src / ".hidden.png").write_bytes((src / "img0.png").read_bytes())
    result = invoke(src, "-o", out, "-k", "box", "--pattern", "*.tif")
    assert result.exit_code == 0
    assert "Warning: --pattern matched none of the 3 image(s)" in result.stderr
    result = invoke(
        src, "-o", out, "-k", "box", "--normalize", "--report", tmp_path / "r.json", "-j", "1"
    )
    assert result.exit_code == 0
    assert f"Warning: {src / 'anim.gif'}: GIF has 3 frames; using the first" in result.stderr
    assert "hidden or special entries" in result.stderr  # .hidden.png, counted not lost
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run"]["normalize"] is True and report["run"]["jobs"] == 1
    assert report["run"]["patterns"] == [] and report["cwd"] == os.getcwd()
    assert report["other_entries"] == 1
    gif = next(f for f in report["files"] if f["input"].endswith("anim.gif"))
    assert gif["notes"] == ["GIF has 3 frames; using the first"]
    (src / "broken.png").write_bytes(b"garbage")
    result = invoke(src, "-o", tmp_path / "q", "-k", "box", "--quiet")
    assert result.exit_code == 1
    # --quiet: the failure line only: no table, no warnings (anim.gif's is in the report)
    assert "batch summary" not in result.stderr and "Warning" not in result.stderr
    assert f"failed: {src / 'broken.png'}: not an image file" in result.stderr


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_output_that_appears_after_planning_is_never_replaced(tmp_path, jobs):
    src, out = tmp_path / "in", tmp_path / "out"
    make_tree(src, n=3)
    plan = plan_batch(src, out, recursive=True)
    settings = JobSettings((builtin_kernel("box"),), FilterOptions())
    late = Path(plan.jobs[0].output)  # another run writes it after this one planned
    late.parent.mkdir(parents=True, exist_ok=True)
    late.write_bytes(b"written by another run")
    summary = run_batch(plan, settings, jobs=jobs)
    failed = [r for r in summary.results if r.status == "failed"]
    assert [r.output for r in failed] == [str(late)]
    assert failed[0].reason == (
        f"{late}: already exists (written by another run meanwhile?); kept, not replaced"
    )
    assert late.read_bytes() == b"written by another run"
    assert sum(r.status == "processed" for r in summary.results) == len(plan.jobs) - 1
    assert not [p for p in out.rglob(".convcli-*")]
    # with --overwrite it is replaced
    summary = run_batch(plan_batch(src, out, recursive=True), settings, jobs=jobs, overwrite=True)
    assert all(r.status == "processed" for r in summary.results)
    assert late.read_bytes() != b"written by another run" and late.stat().st_size > 100


def test_exclusive_atomic_write_keeps_what_is_there(tmp_path):
    from convcli.atomic import open_atomically

    target = tmp_path / "t.bin"
    with open_atomically(target, exclusive=True) as fh:
        fh.write(b"first")
    with pytest.raises(FileExistsError):
        with open_atomically(target, exclusive=True) as fh:
            fh.write(b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]
