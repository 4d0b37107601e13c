"""What the strip-by-strip encoders share: strips of any height in, blocks of a fixed
number of rows out (:class:`RowBlocks`), and the encoder jobs still pending after a
failure (:func:`abandon`).  Used by :mod:`convcli.png_codec` and :mod:`convcli.jpeg_codec`,
so that each file's bytes depend on the image alone, not on the strips it came in; and
ISA-L's deflate (:func:`isal_zlib`), for the PNG and TIFF writers; and the row numbers
the lazy row readers take (:func:`row_index`)."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # (not imported at run time: see convcli.jpeg_codec)
    from numpy.typing import NDArray


class RowBlocks:
    """Rows of a ``height``-row image, added in strips, taken in blocks of ``block_rows``
    (the last block holds what is left)."""

    def __init__(self, height: int, block_rows: int, what: str) -> None:
        self.height, self.block_rows, self.what = height, block_rows, what
        self.rows = 0  #: received
        self._parts: deque[NDArray[Any]] = deque()
        self._held = 0

    def add(self, strip: NDArray[Any]) -> list[NDArray[Any]]:
        """Take the strip's rows; return the blocks now complete (one array each: the
        strip itself or a view of it when it holds the block whole, else a joined copy)."""
        rows = strip.shape[0]
        if self.rows + rows > self.height:
            raise ValueError(f"more rows than the {self.what}'s height {self.height}")
        self.rows += rows
        if rows:
            self._parts.append(strip)
            self._held += rows
        blocks = []
        while self._held >= self.block_rows or (self.rows == self.height and self._held):
            blocks.append(self._take(min(self.block_rows, self._held)))
        return blocks

    def _take(self, rows: int) -> NDArray[Any]:
        parts, taken = [], 0
        while taken < rows:
            head = self._parts[0]
            need = rows - taken
            if head.shape[0] <= need:
                parts.append(self._parts.popleft())
                taken += head.shape[0]
            else:
                parts.append(head[:need])
                self._parts[0] = head[need:]
                taken = rows
        self._held -= rows
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def check_complete(self) -> None:
        """Raise unless every row was added (before writing the end of the file)."""
        if self.rows != self.height:
            raise ValueError(f"{self.what} has {self.rows} of its {self.height} rows")


def abandon(pending: Iterable[Any]) -> None:
    """Cancel the encoder jobs not started and wait for the running ones (after a failure:
    no job outlives its writer); results and their errors are dropped."""
    from concurrent.futures import Future

    items = list(pending)
    for item in items:
        if isinstance(item, Future):
            item.cancel()
    for item in items:
        if isinstance(item, Future) and not item.cancelled():
            item.exception()


@functools.cache
def isal_zlib() -> Any:
    """ISA-L's zlib module, for the PNG and TIFF deflaters (imported on first use: a JPEG
    job never needs it), or None without it (then zlib)."""
    try:
        from isal import isal_zlib as fast
    except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
        return None
    return fast


def row_index(rows: Any, height: int) -> NDArray[np.intp]:
    """Row numbers as numpy takes them (negative ones from the end), checked against the
    ``height`` of a lazy reader of rows (``tiff_codec.TiffRows``, ``png_codec.PngRows``)."""
    index = np.asarray(rows, dtype=np.intp).reshape(-1)
    index = np.where(index < 0, index + height, index)
    if index.size and (int(index.min()) < 0 or int(index.max()) >= height):
        raise IndexError(f"row index out of range for an image of {height} rows")
    return index
