"""Capture what C libraries write straight to file descriptor 2 (libtiff's warnings and
errors through Pillow, say), so that a damaged file gives one ``Error:`` line, not raw
library chatter on the terminal.

Python's ``sys.stderr`` is left alone; only the descriptor is redirected, to a temporary
file, for the duration of a ``with`` block.  Nested or concurrent blocks (threads) share
one redirection, which ends with the last block.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_sink = None


def _temporary_file() -> Any:
    """An anonymous file: memfd on Linux (no tempfile import: ~3 ms at every start)."""
    if hasattr(os, "memfd_create"):
        try:
            return open(os.memfd_create("convcli-stderr", os.MFD_CLOEXEC), "w+b", buffering=0)
        except OSError:
            pass
    import tempfile

    return tempfile.TemporaryFile()


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Redirect fd 2 into a temporary file for the block; the list it yields receives the
    captured lines (stripped, non-empty, in order, duplicates dropped) when the block ends."""
    global _depth, _saved_fd, _sink
    lines: list[str] = []
    with _lock:
        try:
            if _depth == 0:
                sys.stderr.flush()
                sink = _temporary_file()
                saved = os.dup(2)
                os.dup2(sink.fileno(), 2)
                _sink, _saved_fd = sink, saved
            _depth += 1
            start = os.lseek(_sink.fileno(), 0, os.SEEK_END) if _sink is not None else 0
        except OSError:  # no fd 2, or no temporary file: nothing is captured
            start = None
    try:
        yield lines
    finally:
        with _lock:
            if start is not None and _sink is not None:
                end = os.lseek(_sink.fileno(), 0, os.SEEK_END)
                text = os.pread(_sink.fileno(), min(end - start, 1 << 16), start)
                seen = dict.fromkeys(
                    line.strip() for line in text.decode("utf-8", "replace").splitlines()
                )
                lines.extend(line for line in seen if line)
                _depth -= 1
                if _depth == 0:
                    assert _saved_fd is not None
                    os.dup2(_saved_fd, 2)
                    os.close(_saved_fd)
                    _sink.close()
                    _sink, _saved_fd = None, None
