"""Filtering whole folders: planning, safety checks, and running jobs on an executor.

A batch is planned before any work starts (:func:`plan_batch`): which files are
images, where each output goes (the folder structure mirrored, stems kept),
whether two inputs would write the same output, whether the output folder is
the input folder or lies inside it (checked by file identity, so symlinks do
not fool it), and which outputs already exist.  Then every image is one job
(:func:`run_job`, a plain function of picklable arguments) run by an executor:
in this process, on a pool of processes, or on a Dask cluster.  Each job reads
one image, filters it and writes it atomically, so an interrupted batch leaves
complete outputs only, and a rerun with ``skip_existing`` finishes it.

The library never prints: progress goes through a callback that receives each
:class:`JobResult` as it completes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .atomic import remove_stale_temporaries
from .errors import PathError, UsageError
from .pipeline.job import Job, JobResult, JobSettings, run_job

#: Extensions read as images.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
#: --format choices and the extension they write.
FORMAT_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "webp": ".webp", "bmp": ".bmp"}
#: Extensions an output keeps from its input.
_WRITE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})


@dataclass
class BatchPlan:
    """The checked plan of a batch (paths absolute, so workers elsewhere find them)."""

    jobs: list[Job]
    existing: list[Job]  #: jobs whose output already exists
    ignored: int  #: files that are not images
    input_dir: str
    output_dir: str
    excluded: int = 0  #: images that match none of the patterns
    other: int = 0  #: hidden entries, links to folders, special files: not looked into
    unreadable: list[tuple[str, str]] = field(default_factory=list)  #: (folder, reason)
    #: the files and folders given (absolute); ``input_dir`` is the first folder (or the
    #: first file's folder)
    inputs: list[str] = field(default_factory=list)


@dataclass
class BatchSummary:
    """Totals of a finished (or interrupted) batch."""

    results: list[JobResult] = field(default_factory=list)
    wall_s: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def megapixels(self) -> float:
        return sum(r.megapixels for r in self.results if r.status == "processed")


def is_same_or_inside(candidate: Path, folder: Path) -> bool:
    """Whether ``candidate`` (which may not exist yet) is ``folder`` or lies inside it.

    Compares file identity (device and inode) of ``folder`` with ``candidate``
    and each of its existing ancestors, after resolving symlinks, so neither
    symlinks nor different spellings of a path hide the overlap.
    """
    target = os.stat(folder)
    path = Path(os.path.realpath(candidate))
    for p in (path, *path.parents):
        try:
            st = os.stat(p)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


@dataclass
class _Walk:
    """What :func:`iter_files` passed over."""

    other: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)


class _Unlistable(Exception):
    def __init__(self, folder: str, reason: str) -> None:
        super().__init__(f"{folder}: {reason}")
        self.folder, self.reason = folder, reason


def iter_files(root: Path, recursive: bool, walk: _Walk | None = None) -> Iterator[Path]:
    """Files under ``root`` in a stable (sorted) order.

    Hidden entries, links to folders (which could loop) and special files are
    passed over and counted in ``walk.other``; a sub-folder that cannot be listed
    is recorded in ``walk.unreadable`` and the walk goes on.  ``root`` itself must
    be listable (:class:`PathError`).
    """
    walk = walk if walk is not None else _Walk()
    try:
        yield from _walk(root, recursive, walk)
    except _Unlistable as exc:
        raise PathError(f"{exc.folder}: {exc.reason}") from None


def _walk(folder: Path, recursive: bool, walk: _Walk) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise _Unlistable(str(folder), f"cannot list folder ({exc.strerror or exc})") from None
    for entry in entries:
        if entry.name.startswith("."):
            walk.other += 1
        elif entry.is_dir(follow_symlinks=False):
            if recursive:
                try:
                    yield from _walk(Path(entry.path), recursive, walk)
                except _Unlistable as exc:
                    walk.unreadable.append((exc.folder, exc.reason))
        elif entry.is_file():  # a regular file, or a link to one
            yield Path(entry.path)
        else:  # a link to a folder, a dangling link, a FIFO, a socket...
            walk.other += 1


def plan_batch(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    recursive: bool = False,
    patterns: Sequence[str] = (),
    fmt: str | None = None,
) -> BatchPlan:
    """The plan for one input folder (``convcli batch``): :func:`plan_inputs` of it."""
    src = Path(os.path.abspath(input_dir))
    if not src.is_dir():
        raise PathError(f"{input_dir}: input folder does not exist or is not a folder")
    return plan_inputs([input_dir], output_dir, recursive=recursive, patterns=patterns, fmt=fmt)


def plan_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    recursive: bool = False,
    patterns: Sequence[str] = (),
    fmt: str | None = None,
) -> BatchPlan:
    """Find the images, map them to outputs, and refuse unsafe batches (:class:`PathError`).

    ``inputs`` are image files and folders.  A file is written to ``output_dir`` under its
    own stem; a folder's images (its sub-folders' too with ``recursive``, mirrored) are
    written into ``output_dir`` as ``convcli batch`` does.  ``patterns`` select among
    the images found in folders; files named explicitly are always taken.

    Refused before any work: a missing input; an output folder that is an input folder
    or lies inside one, and any output that would land inside an input folder (an input
    folder nested in the output folder, or a link in the output tree pointing into the
    input), all by file identity; an output that would be one of the inputs; two inputs
    mapped to one output.
    """
    if not inputs:
        raise UsageError("no input given")
    dst = Path(os.path.abspath(output_dir))
    if dst.exists() and not dst.is_dir():
        raise PathError(f"{output_dir}: output exists and is not a folder")
    if fmt is not None and fmt not in FORMAT_EXTENSIONS:
        raise UsageError(f"format must be one of {', '.join(FORMAT_EXTENSIONS)}, got '{fmt}'")
    folders: list[tuple[Path, str]] = []
    for given in inputs:
        path = Path(os.path.abspath(given))
        if path.is_dir():
            if is_same_or_inside(dst, path):
                raise PathError(
                    f"output folder '{output_dir}' is the input folder or lies inside it "
                    f"('{given}'); choose another"
                )
            folders.append((path, str(given)))
        elif not path.is_file():
            what = "does not exist" if not os.path.lexists(path) else "is not a file or folder"
            raise PathError(f"{given}: input {what}")
    input_files = {os.path.realpath(os.path.abspath(g)) for g in inputs}
    jobs: list[Job] = []
    ignored = excluded = 0
    by_output: dict[str, str] = {}
    checked_folders: set[Path] = set()
    walk = _Walk()

    def add(path: Path, rel: Path, shown: str) -> None:
        ext = FORMAT_EXTENSIONS[fmt] if fmt else path.suffix.lower()
        if ext == ".gif" or ext not in _WRITE_EXTENSIONS:
            ext = ".png"  # convcli does not write GIF (nor an unknown extension)
        out = dst / rel.parent / (path.stem + ext)
        if out.parent not in checked_folders:
            for folder, name in folders:
                if is_same_or_inside(out.parent, folder):
                    raise PathError(
                        f"'{shown}' would be written to '{out}', inside the input folder "
                        f"'{name}' (the input lies inside the output, or a link leads "
                        "there); choose an output folder apart from the input"
                    )
            checked_folders.add(out.parent)
        if os.path.realpath(out) in input_files:
            raise PathError(
                f"'{shown}' would be written to '{out}', which is one of the inputs; "
                "choose another output folder or --format"
            )
        key = os.path.normcase(str(out))
        if key in by_output:
            raise PathError(
                f"'{by_output[key]}' and '{shown}' would both be written to '{out}'; "
                "rename one or use --format"
            )
        by_output[key] = shown
        jobs.append(Job(str(path), str(out)))

    for given in inputs:
        src = Path(os.path.abspath(given))
        if not src.is_dir():
            add(src, Path(src.name), str(given))
            continue
        for path in iter_files(src, recursive, walk):
            rel = path.relative_to(src)
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored += 1
                continue
            if patterns and not any(
                fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(str(rel), p) for p in patterns
            ):
                excluded += 1
                continue
            add(path, rel, str(rel) if len(inputs) == 1 else os.path.join(str(given), str(rel)))
    existing = [j for j in jobs if os.path.lexists(j.output)]
    first = Path(os.path.abspath(inputs[0]))
    return BatchPlan(
        jobs,
        existing,
        ignored,
        str(first if first.is_dir() else first.parent),
        str(dst),
        excluded=excluded,
        other=walk.other,
        unreadable=walk.unreadable,
        inputs=[os.path.abspath(g) for g in inputs],
    )


def check_existing(plan: BatchPlan, *, skip_existing: bool, overwrite: bool) -> None:
    """Refuse (:class:`UsageError`) a batch whose outputs exist, unless told what to do."""
    if skip_existing and overwrite:
        raise UsageError("give --skip-existing or --overwrite, not both")
    if plan.existing and not (skip_existing or overwrite):
        first = plan.existing[0].output
        raise PathError(
            f"{len(plan.existing)} output(s) already exist (first: '{first}'); "
            "use --skip-existing to keep them or --overwrite to replace them"
        )


def _worker_init(parent: int | None = None) -> None:
    """Set up a pool worker: SIGINT is left to the parent, which stops the workers in
    order (no tracebacks), SIGTERM ends it, and the worker ends when the parent does
    (killed, out of memory), instead of waiting on its queue forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM (the pool's own shutdown, or the parent's death) ends a worker at once, as
    # before the command's clean-stop handler existed; the parent removes its temporaries
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if parent is None:
        return
    if os.getppid() == parent and _die_with_parent() and os.getppid() == parent:
        return  # (checked again: the parent may have died before prctl took effect)
    # no prctl, or not forked by the batch process itself (forkserver): watch its pid
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _die_with_parent() -> bool:
    """Ask Linux to send this process SIGTERM when its parent ends (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while True:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)  # orphaned: a temporary file it leaves is removed by the next run
        except PermissionError:
            pass
        time.sleep(0.5)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),)
    )


@contextlib.contextmanager
def _sigint_after_forks() -> Iterator[None]:
    """Hold a Ctrl-C back while worker processes start, and raise it afterwards.

    A KeyboardInterrupt raised inside ``os.fork``'s at-fork hooks (logging has one) is
    printed and dropped by Python, so a SIGINT landing in that window was lost and the
    batch ran on.  Here the signal only sets a flag until the forks are done.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread, where SIGINT is raised
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if caught:
        raise KeyboardInterrupt


def remove_temporaries(plan: BatchPlan) -> int:
    """Remove the temporary files of atomic writes that stopped writers left in the output
    folders of ``plan`` (their process is gone); returns how many."""
    return _remove_temporaries(plan.jobs)


def _remove_temporaries(jobs: Sequence[Job]) -> int:
    """Remove the temporary files whose writers are gone in the output folders of ``jobs``;
    a concurrent run's live temporaries are kept."""
    folders = {str(Path(j.output).parent) for j in jobs}
    return sum(remove_stale_temporaries(folder) for folder in folders)


def run_batch(
    plan: BatchPlan,
    settings: JobSettings,
    *,
    jobs: int = 1,
    skip_existing: bool = False,
    overwrite: bool = False,
    executor: str = "local",
    scheduler: str | None = None,
    on_result: Callable[[JobResult], None] | None = None,
) -> BatchSummary:
    """Run the jobs of ``plan``; ``on_result`` sees each result as it completes.

    Existing outputs: skipped with ``skip_existing``, replaced with ``overwrite``,
    otherwise the batch is refused before any work.  KeyboardInterrupt stops the
    workers, removes temporary files, and returns the partial summary with
    ``interrupted`` set.
    """
    check_existing(plan, skip_existing=skip_existing, overwrite=overwrite)
    remove_temporaries(plan)  # left by an earlier run that was killed mid-write
    settings = replace(settings, overwrite=overwrite)
    summary = BatchSummary()
    notify = on_result or (lambda r: None)
    for folder, reason in plan.unreadable:  # the folders the plan could not look into
        r = JobResult(folder, "", "failed", reason=f"{folder}: {reason}")
        summary.results.append(r)
        notify(r)
    todo: list[Job] = []
    skip = {j.output for j in plan.existing} if skip_existing else set()
    for job in plan.jobs:
        if job.output in skip:
            r = JobResult(job.input, job.output, "skipped", reason="output exists")
            summary.results.append(r)
            notify(r)
        else:
            todo.append(job)
    if jobs > 1 and len(todo) > 1 and settings.threads is None and not scheduler:
        from .backends.direct import available_cores

        # workers side by side on this machine: share the cores between them
        settings = replace(settings, threads=max(1, available_cores() // jobs))
    start = time.perf_counter()
    try:
        if executor == "dask":
            from .batch_dask import run_on_dask

            results: Iterator[JobResult] = run_on_dask(
                todo, settings, scheduler=scheduler, workers=jobs
            )
        elif executor != "local":
            raise UsageError(f"executor must be local or dask, got '{executor}'")
        elif jobs <= 1 or len(todo) <= 1:
            results = (run_job(job, settings) for job in todo)
        else:
            results = _run_pool(todo, settings, jobs)
        for r in results:
            summary.results.append(r)
            notify(r)
    except KeyboardInterrupt:
        summary.interrupted = True
        remove_temporaries(plan)
    summary.wall_s = time.perf_counter() - start
    return summary


#: The reason given for the images a worker was filtering when it died.
WORKER_DIED = (
    "the worker process filtering it died (killed, or out of memory); "
    "rerun with --skip-existing to try it again"
)


def _run_pool(todo: list[Job], settings: JobSettings, jobs: int) -> Iterator[JobResult]:
    """Jobs on a process pool, at most 2 per worker in flight (images are streamed).

    A worker that dies (killed, out of memory) breaks the pool, and every image in
    flight with it: those are then run again one at a time, each in a worker of
    its own, so only the image that kills its worker again fails
    (:data:`WORKER_DIED`); a new pool takes the rest.  Those reruns may replace their
    outputs: this run's other worker may have finished one before the pool broke.
    """
    queue = iter(todo)
    suspects: list[Job] = []
    # an image in flight when the pool broke may have been written already by this run's
    # other worker (its result lost with the pool): its rerun may replace that output
    rerun = replace(settings, overwrite=True)
    while True:
        for job in suspects:
            yield _run_alone(job, rerun)
        suspects = []
        pool = _new_pool(jobs)
        pending: dict[Future[JobResult], Job] = {}
        try:
            with _sigint_after_forks():  # the workers are forked on the first submit
                for job in queue:
                    pending[pool.submit(run_job, job, settings)] = job
                    if len(pending) >= 2 * jobs:
                        break
            while pending and not suspects:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        suspects.append(job)
                        continue
                    yield result
                    nxt = next(queue, None)
                    if nxt is not None:
                        with _sigint_after_forks():  # a start method may fork here too
                            pending[pool.submit(run_job, nxt, settings)] = nxt
        except BaseException:
            _stop(pool, pending)
            raise
        if suspects:  # the pool is broken: everything still in it is suspect too
            suspects += pending.values()
            _stop(pool, pending)
            _remove_temporaries(suspects)  # the other workers were stopped mid-write
            continue
        pool.shutdown(wait=True)
        return


def _run_alone(job: Job, settings: JobSettings) -> JobResult:
    """One job in a worker process of its own: a failed result if that worker dies."""
    pool = _new_pool(1)
    future: Future[JobResult] | None = None
    try:
        with _sigint_after_forks():
            future = pool.submit(run_job, job, settings)
        return future.result()
    except BrokenProcessPool:
        pool.shutdown(wait=True)  # the dead worker reaped: its process id is gone
        _remove_temporaries([job])
        return JobResult(job.input, job.output, "failed", reason=WORKER_DIED)
    except BaseException:
        _stop(pool, {future: job} if future is not None else {})
        raise
    finally:
        pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor, pending: dict[Future[JobResult], Job]) -> None:
    """Cancel what has not started and stop the workers now (a half-written temporary
    is removed by the caller)."""
    for future in pending:
        future.cancel()
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for proc in workers:
        proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for proc in workers:  # reaped, so that their temporaries count as a gone writer's
        proc.join(timeout=10)


def run_report(
    plan: BatchPlan,
    settings: JobSettings,
    summary: BatchSummary,
    argv: Sequence[str],
    run: dict[str, object] | None = None,
) -> dict[str, object]:
    """The JSON report: every file, the run's kernels and options, and library versions.

    ``run`` holds the batch's own settings (format, recursive, patterns, jobs,
    executor, ...), recorded as given.
    """
    import importlib.metadata

    import numpy
    import PIL
    import scipy

    from . import __version__

    versions = {
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pillow": PIL.__version__,
    }
    if (run or {}).get("executor") == "dask":
        for dist in ("dask", "distributed"):
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
    return {
        "convcli": __version__,
        "versions": versions,
        "command": list(argv),
        "cwd": os.getcwd(),
        "run": dict(run or {}),
        "input_dir": plan.input_dir,
        "inputs": list(plan.inputs),
        "output_dir": plan.output_dir,
        "edge": settings.edge,
        "kernels": [
            {
                "name": k.name,
                "shape": list(k.shape),
                "origin": list(k.origin),
                "weights": k.weights.tolist(),
            }
            for k in settings.kernels
        ],
        "options": asdict(settings.options),
        "quality": settings.quality,
        "compress_level": settings.compress_level,
        "tiff_compression": settings.tiff_compression,
        "ignored_files": plan.ignored,
        "excluded_by_pattern": plan.excluded,
        "other_entries": plan.other,
        "interrupted": summary.interrupted,
        "wall_s": summary.wall_s,
        "counts": {s: summary.count(s) for s in ("processed", "skipped", "failed")},
        "files": [asdict(r) for r in summary.results],
    }
