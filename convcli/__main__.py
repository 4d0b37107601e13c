"""``python -m convcli``, and the ``convcli`` command (:func:`command`)."""

import atexit
import os
import sys
import threading


def run() -> None:
    """The command line (click's main, which ends by raising SystemExit).

    numpy's (and scipy's) OpenBLAS starts a thread per core when it is loaded, and those
    threads spin for a while waiting for work that never comes here (the only matrix work
    is a kernel's tiny SVD): on two cores they take one from the filter threads.  So unless
    the environment says otherwise, the command's OpenBLAS gets one thread, set before
    numpy is loaded (batch workers inherit it).  The library itself leaves BLAS alone.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .cli import main

    main(prog_name="convcli")


def command() -> None:
    """:func:`run` in a process of its own, which then ends without tearing the interpreter
    down: freeing every module and joining the idle strip threads took 20-40 ms of a
    one-image run.  The atexit handlers still run and the standard streams are flushed;
    when another thread is still alive, or the exit status is not a number, the process
    ends the ordinary way."""
    try:
        run()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
        _exit_now(code)
        raise
    _exit_now(code)


def _exit_now(code: object) -> None:
    if code is None:
        code = 0
    if not isinstance(code, int):
        return  # SystemExit("message"): Python prints it
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon and not thread.name.startswith("convcli_"):
            return  # someone else's thread may still be working
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # a closed pipe, say: the ordinary exit reports it
        return
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    command()
