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

    A JPEG that the command line names as its input (:func:`early_input`) starts decoding
    before click is loaded.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _terminate_cleanly()
    path = early_input(sys.argv)
    if path is not None:
        from .jpeg_codec import start_early

        start_early(path)
    from .cli import main

    main(prog_name="convcli")


def _terminate_cleanly() -> None:
    """SIGTERM (``kill``, a service manager, a timeout) raises
    :class:`convcli.errors.Terminated` in the main thread, so that the command stops as on
    Ctrl-C: temporary files removed, one ``Error: terminated`` line, exit code 143.  Left
    alone when something already handles SIGTERM (a parent that set it to be ignored)."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        from .errors import Terminated

        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise Terminated()

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminate)


#: The commands that read one JPEG input ahead (:mod:`convcli.cli.filter_cmds`' ``read_ahead``).
_READ_AHEAD_COMMANDS = frozenset({"apply", "blur", "sharpen", "edge"})
#: Words after which the command line is left to click alone.
_NOT_EARLY = frozenset({"-h", "--help", "--version", "--verify", "--max-pixels", "--"})


def early_input(argv: list[str]) -> str | None:
    """The input file of a filtering command line, found before click (and most of convcli)
    is loaded, so that a JPEG input starts decoding at once and the decoding overlaps those
    imports (about 20 ms) too; a 12-MP blur took 7-13 ms less.  It is the one word after
    the command that is an existing file and neither an option nor the output
    (``-o``/``--output``'s value);
    None if there is no such word or more than one, or the line asks for help, a version,
    ``--verify`` or ``--max-pixels``.  A guess only: the command uses the decoding only
    for the input click finds, and drops it otherwise
    (:func:`convcli.jpeg_codec.take_early`)."""
    if len(argv) < 3 or argv[1] not in _READ_AHEAD_COMMANDS:
        return None
    found = None
    words = iter(argv[2:])
    for word in words:
        if word in _NOT_EARLY or word.startswith("--max-pixels="):
            return None
        if word in ("-o", "--output"):
            next(words, None)
        elif not word.startswith("-") and os.path.isfile(word):
            if found is not None:
                return None
            found = word
    return found


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
