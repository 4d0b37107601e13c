"""Writing files so that nothing is lost: a temporary file in the destination folder,
flushed to disk, then renamed into place.

A failed or interrupted write (encoder error, full disk, Ctrl-C) leaves no partial
file and any existing file at the destination as it was.  Every file convcli
writes (images, kernels, matrices, reports) goes through :func:`write_atomically`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

#: Prefix and suffix of the temporary files (``convcli batch`` cleans up leftovers).
TEMP_PREFIX, TEMP_SUFFIX = ".convcli-", ".part"


def _host_tag() -> str:
    # 8 hex digits naming this machine: folders on a shared file system (a Dask cluster)
    # hold temporaries of writers on other hosts, whose process ids mean nothing here.
    # CPython's own SHA-1 and uname: hashlib and socket would cost a one-image run ~5 ms
    # of imports (OpenSSL) for the same digest of the same name.
    try:
        from _sha1 import sha1
    except ImportError:  # pragma: no cover - another Python
        from hashlib import sha1
    if hasattr(os, "uname"):
        host = os.uname().nodename  # what gethostname() returns on POSIX
    else:  # pragma: no cover - Windows
        import socket

        host = socket.gethostname()
    return sha1(host.encode("utf-8", "replace")).hexdigest()[:8]


def _create_temporary(folder: str, made: list[str]) -> str:
    """A new empty file ``<prefix><12 random hex digits>.part`` in ``folder``, made with
    O_EXCL (never another's), mode 0600 as mkstemp makes them; returns its path.  The path
    is put in ``made`` before the file exists, so that a caller's clean-up removes it even
    when Ctrl-C or SIGTERM interrupts this function after the file was made."""
    prefix = os.path.join(folder, temp_prefix())
    for _ in range(100):
        path = f"{prefix}{os.urandom(6).hex()}{TEMP_SUFFIX}"
        made.append(path)
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600
            )
        except FileExistsError:  # pragma: no cover - 48 random bits
            made.pop()  # another's
            continue
        os.close(fd)
        return path
    raise FileExistsError(17, f"no free temporary name in '{folder}'")  # pragma: no cover


def parent_folder(path: str) -> str:
    """The folder that holds the file ``path`` ("." for a bare name), as ``pathlib``'s
    ``Path(path).parent`` names it (pathlib itself is not imported: ~5 ms of a run)."""
    parts = [part for part in path.split(os.sep) if part not in ("", ".")]
    root = os.sep if path.startswith(os.sep) else ""
    return root + os.sep.join(parts[:-1]) if len(parts) > 1 else root or "."


def temp_prefix() -> str:
    """The prefix of this process's temporary files: ``.convcli-<host>-<pid>-``; the
    writer of a leftover can then be told alive or gone (:func:`writer_gone`)."""
    return f"{TEMP_PREFIX}{_host_tag()}-{os.getpid()}-"


def writer_gone(name: str) -> bool:
    """Whether the process that wrote the temporary file ``name`` provably no longer runs.

    True only for a name this version writes, from this host, whose process id is not a
    running process.  Anything else (another host, a live process, which may be an
    unrelated one that reuses the id, an older name without a process id) counts as
    possibly alive: its file is kept.
    """
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return False
    parts = name[len(TEMP_PREFIX) :].split("-", 2)
    if len(parts) != 3 or parts[0] != _host_tag() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False  # this process: a write still in progress here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False  # a live process of another user (or a nonsense id: keep the file)
    return False


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Remove the temporary files in ``folder`` whose writers are gone (killed mid-write:
    SIGKILL, out of memory); returns how many.  Live writers' files are never touched."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if writer_gone(name):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except OSError:
                pass
    return removed


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; raises :class:`OSError` (nothing written) on failure.

    A new file gets the usual permissions (0666 less the umask); a replaced file
    keeps its own.
    """
    with open_atomically(path) as fh:
        fh.write(data)


@contextlib.contextmanager
def open_atomically(path: str | os.PathLike[str], *, exclusive: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through, atomically: the data goes to a temporary
    file in the same folder, which is flushed to disk and renamed into place when the
    ``with`` block ends normally, and removed if it ends by any exception (Ctrl-C
    included), leaving an existing file at ``path`` as it was.  For writers that stream.

    A ``path`` that is a symbolic link writes the file it points to (atomically, beside
    it) and keeps the link.  A device, FIFO or socket (``/dev/null``, ``/dev/stdout``) is
    written into as a stream, as standard output is, and never replaced.

    ``exclusive``: never replace a file; if one exists at ``path`` when the data is complete
    (another run wrote it meanwhile), raise :class:`FileExistsError` and keep it.  The
    temporary file is linked into place, which fails if the name exists.
    """
    target = os.fspath(path)
    if os.path.islink(target):  # write the file the link points to, beside it; the link stays
        target = os.path.realpath(target)
    try:
        kind = os.stat(target).st_mode
    except OSError:
        kind = 0
    if kind and not stat.S_ISREG(kind) and not stat.S_ISDIR(kind):
        # a device, FIFO or socket (/dev/null, /dev/stdout...): written into as a stream,
        # never replaced by a regular file
        with open(target, "wb") as fh:
            yield fh
        return
    folder = parent_folder(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, f"folder '{folder}' does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(21, "is a directory")
    made: list[str] = []  # the temporary file's path, known before the file exists
    try:
        tmp = _create_temporary(folder, made)
        fh = open(tmp, "wb")  # by name: writers such as tifffile want fh.name a path
        try:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        except BaseException:
            # closing flushes what is buffered, which fails again on a full disk: that
            # second error must not replace the first (which names the file)
            try:
                fh.close()
            except OSError:
                pass
            raise
        fh.close()
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        try:
            os.chmod(tmp, mode)
        except OSError:
            pass
        if exclusive:
            try:
                os.link(tmp, target)  # fails if the name exists: no clobbering, no race
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: check, then rename
                if os.path.exists(target):
                    raise FileExistsError(17, "File exists", target) from None
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
        else:
            os.replace(tmp, target)
        made.clear()
    finally:
        for path in made:  # not moved into place (once it is, the name is gone: no harm)
            try:
                os.unlink(path)
            except OSError:
                pass
