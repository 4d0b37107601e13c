"""``python -m convcli``, and the ``convcli`` command (:func:`run`)."""

import os


def run() -> None:
    """The command line, in a process of its own.

    numpy's (and scipy's) OpenBLAS starts a thread per core when it is loaded, and those
    threads spin for a while waiting for work that never comes here (the only matrix work
    is a kernel's tiny SVD): on two cores they take one from the filter threads.  So unless
    the environment says otherwise, the command's OpenBLAS gets one thread, set before
    numpy is loaded (batch workers inherit it).  The library itself leaves BLAS alone.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import main

    main(prog_name="convcli")


if __name__ == "__main__":
    run()
