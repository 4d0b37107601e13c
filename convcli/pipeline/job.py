"""One image from file to file as a batch job: the unit both of ``convcli batch``'s
executors (a local process pool, and Dask) run.

:func:`run_job` is a plain function of picklable arguments that never raises for a bad
image: whatever goes wrong becomes a ``failed`` :class:`JobResult` with a one-line reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConvcliError
from ..kernels import Kernel
from ..process import FilterOptions


@dataclass(frozen=True)
class Job:
    """One image to filter."""

    input: str
    output: str


@dataclass(frozen=True)
class JobSettings:
    """Everything a worker needs besides the paths (picklable)."""

    kernels: tuple[Kernel, ...]
    options: FilterOptions
    #: An edge operator (``convcli edge``: sobel, scharr, prewitt, laplacian, log) run
    #: instead of ``kernels`` (then empty).
    edge: str | None = None
    quality: int | None = None
    compress_level: int | None = None
    #: TIFF compression (``--tiff-compression``; None: deflate), for the TIFF outputs only.
    tiff_compression: str | None = None
    #: Threads per filter call in the worker (None: every core).  Workers that run
    #: side by side get a share of the cores each instead of all of them.
    threads: int | None = None
    #: Refuse images of more pixels (None: the default limit, 0: none).
    max_pixels: int | None = None
    #: Replace outputs that exist (``--overwrite``).  Without it an output is created only if
    #: its name is free when the result is complete: one that another run wrote meanwhile
    #: is kept, and this image fails.
    overwrite: bool = False
    #: Check the result on the other backend first (``--verify``; see :mod:`convcli.verify`).
    verify: bool = False


@dataclass
class JobResult:
    """What happened to one image."""

    input: str
    output: str
    status: str  #: "processed", "skipped" or "failed"
    reason: str = ""
    read_s: float = 0.0
    filter_s: float = 0.0
    write_s: float = 0.0
    megapixels: float = 0.0
    backend: str = ""
    notes: list[str] = field(default_factory=list)  #: warnings about the input (GIF frames...)
    verify: dict | None = None  #: ``--verify``'s report (:meth:`Verification.to_dict`)


def is_tiff_output(path: str) -> bool:
    """Whether an output is written as TIFF (its extension: batch names outputs so)."""
    return path.lower().endswith((".tif", ".tiff"))


def run_job(job: Job, settings: JobSettings) -> JobResult:
    """Read, filter and atomically write one image; never raises for a bad image.

    Whatever goes wrong with this image (unreadable, an output it cannot be
    written as, a write failure, even an unexpected error) makes a ``failed``
    result with a one-line reason naming the file; the output is checked
    before filtering, so no work is spent on a result that cannot be written.
    Warnings about the input (a GIF's other frames, say) come back as ``notes``.
    """
    from ..backends.direct import set_thread_limit
    from .files import filter_file

    if settings.threads is not None:
        set_thread_limit(settings.threads)
    result = JobResult(job.input, job.output, "failed")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if settings.verify:  # before writing: a disagreement fails the image, no output
                from ..verify import verify_file

                check = verify_file(
                    job.input, settings.kernels if settings.edge is None else None,
                    settings.options, edge=settings.edge, max_pixels=settings.max_pixels,
                )  # fmt: skip
                result.verify = check.to_dict()
                if not check.ok:
                    result.reason = f"{job.input}: {check.describe()}; nothing written"
                    return result
            Path(job.output).parent.mkdir(parents=True, exist_ok=True)
            report = filter_file(
                job.input,
                job.output,
                settings.kernels if settings.edge is None else None,
                settings.options,
                edge=settings.edge,
                quality=settings.quality,
                compress_level=settings.compress_level,
                tiff_compression=settings.tiff_compression if is_tiff_output(job.output) else None,
                max_pixels=settings.max_pixels,
                exclusive=not settings.overwrite,
            )
        result.read_s, result.filter_s, result.write_s = (
            report.read_s, report.filter_s, report.write_s,
        )  # fmt: skip
        result.notes = list(report.notes)
        result.notes += [str(w.message) for w in caught if str(w.message) not in result.notes]
    except ConvcliError as exc:
        result.reason = str(exc)
        return result
    except OSError as exc:
        result.reason = f"{exc.filename or job.output}: {exc.strerror or exc}"
        return result
    except MemoryError:
        result.reason = f"{job.input}: out of memory"
        return result
    except Exception as exc:  # a bug or a library's surprise must not stop the batch
        result.reason = f"{job.input}: unexpected error ({type(exc).__name__}: {exc})"
        return result
    result.status = "processed"
    result.megapixels = report.width * report.height / 1e6
    result.backend = ",".join(f"{s.plan.backend}/{s.plan.method}" for s in report.filter.steps)
    return result
