"""Running batch jobs on a Dask distributed cluster (optional extra ``convcli[dask]``).

Each job is submitted as it is (the same :func:`convcli.pipeline.job.run_job` as the
local executor); workers read and write the paths they are given, so input and
output folders must be on storage every worker sees.  Without a scheduler
address a local cluster of ``workers`` processes is started for the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .errors import ConvcliError
from .pipeline.job import Job, JobResult, JobSettings, run_job


def run_on_dask(
    jobs: Sequence[Job], settings: JobSettings, *, scheduler: str | None, workers: int
) -> Iterator[JobResult]:
    """Yield the results of ``jobs`` run on a Dask cluster as they complete."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConvcliError(
            "the dask executor needs the optional extra: pip install 'convcli[dask]'"
        ) from None
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="10s")
        else:
            cluster = LocalCluster(
                n_workers=max(1, workers), threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None,
            )  # fmt: skip
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        raise ConvcliError(f"cannot reach the Dask scheduler '{scheduler}': {exc}") from None
    try:
        scattered = client.scatter(settings, broadcast=True)
        futures = [
            client.submit(run_job, job, scattered, key=f"convcli-{i}-{job.output}", pure=False)
            for i, job in enumerate(jobs)
        ]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
