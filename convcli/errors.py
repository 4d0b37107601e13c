"""Exceptions raised by convcli.

Every exception carries a one-line, user-facing message: the CLI prints
``Error: <message>`` and exits non-zero, so a message must name what is wrong
and where (file, line, column, parameter) without needing a traceback.
"""

from __future__ import annotations

import os
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name, say) escaped: ``\\n``."""
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


class ConvcliError(Exception):
    """Base class: a problem the user can fix; ``str(err)`` is a one-line message (control
    characters from file names or arguments are escaped)."""

    #: Exit code the CLI uses: 2 for a bad command line (what was typed cannot work,
    #: whatever the files hold), 1 for a failure at run time (a file, the data or the
    #: system said no).
    exit_code: int = 1

    def __str__(self) -> str:
        return one_line(super().__str__())


class UsageError(ConvcliError):
    """The command line is wrong in itself, whatever the files hold: an argument or option
    value is invalid (unknown mode, bad parameter), or options conflict."""

    exit_code = 2


class PathError(ConvcliError):
    """A path named on the command line is missing, of the wrong kind (a folder for a
    file, say), or refused for safety (an output inside the input): the file system said
    no, so it is a failure at run time (exit 1), not a bad command line."""


class KernelError(ConvcliError):
    """A kernel is invalid (non-finite weights, wrong shape, zero sum when normalizing)."""


class KernelSpecError(KernelError, UsageError):
    """A kernel spec on the command line names no built-in or has bad parameters."""

    exit_code = 2


class KernelFileError(KernelError):
    """A kernel file or kernel string cannot be parsed; names the source, line and column."""

    def __init__(
        self,
        source: str | os.PathLike[str],
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.source = str(source)
        self.line = line
        self.column = column
        self.reason = message
        where = self.source
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")
        if self.source == "<string>":
            self.exit_code = 2  # a kernel written on the command line: a usage error


class ImageReadError(ConvcliError):
    """An image file cannot be read or decoded; names the file."""


class ImageWriteError(ConvcliError):
    """An output image cannot be written; names the file. No partial file is left."""


class FilterError(ConvcliError):
    """A filtering request cannot be carried out (e.g. incompatible image and options)."""


class Terminated(KeyboardInterrupt):
    """The ``convcli`` command was sent SIGTERM: raised in its main thread (by the handler
    :func:`convcli.__main__.run` installs) so that every clean-up Ctrl-C gets runs too (no
    temporary file is left behind); the command then exits with 143 (128 + SIGTERM)."""

    exit_code = 143
