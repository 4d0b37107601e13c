"""TIFF by strips and tiles (tifffile): rows read on demand, rows written as they come.

Reading: :class:`TiffRows` is a lazy ``(H, W, C)`` array of a TIFF's first image.
Indexing it with a range of rows (or an index array) reads and decodes only the
strips, or rows of tiles, that hold them (``os.pread``, so threads read side by
side), keeping a few decoded bands in a small cache; a file of any size is read in
bounded memory.  tifffile decodes every compression it knows (none, deflate,
packbits; LZW, JPEG, zstd and more when imagecodecs is installed) and undoes the
predictors.  Uncompressed strips are read row by row instead, in bands of
:data:`RAW_BAND_BYTES`, so a file written as one strip (as tifffile and many numpy-based
writers do) is not read whole.  A strip that is cut short or fails to decode raises
:class:`~convcli.errors.ImageReadError` naming the file and the rows.

Writing: :func:`write_tiff` takes output strips in order and writes a strip-organised
TIFF, BigTIFF when the pixel data could pass 4 GiB, compressed as :data:`COMPRESSIONS`
names (``--tiff-compression``): deflate by default (ISA-L, ``isal``, at level 2), LZW,
zstd (level :data:`ZSTD_LEVEL`), PackBits (each row packed on its own, as libtiff and
tifffile do) or none.  Integer samples get the horizontal-differencing predictor (2)
with deflate, LZW and zstd; float samples, PackBits and none get no predictor.  Each
strip is compressed on the caller's thread pool, so compression runs on all cores, and
the bytes depend on the image alone, not on the threads or the strips it came in.
L, LA, RGB and RGBA at 8 bits, 16 bits or float32; alpha is written as unassociated
(straight) alpha.  The ICC profile, the DPI and the descriptive EXIF tags of the image's
first IFD (make, model, date, artist, copyright, description, software) are kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from ._blocks import isal_zlib, row_index
from .errors import ImageReadError

#: TIFF and BigTIFF magic numbers.
MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Bytes of decoded bands kept in the reader's cache.
CACHE_BYTES = 64 << 20
#: Bytes per band read from an uncompressed file (which is read row by row, not by strips).
RAW_BAND_BYTES = 1 << 20
#: Uncompressed bytes per written strip (the row count follows from the width).
STRIP_BYTES = 1 << 20
#: ISA-L level of the written strips (0-3).
DEFLATE_LEVEL = 2
#: zstd level of the written strips (zstd's own default: about deflate's size, faster).
ZSTD_LEVEL = 3
#: The compressions written, by name (``--tiff-compression``): the Compression tag's value.
COMPRESSIONS = {"deflate": 8, "lzw": 5, "zstd": 50000, "packbits": 32773, "none": 1}
DEFAULT_COMPRESSION = "deflate"
#: The compressions whose integer samples get predictor 2 (horizontal differencing).
PREDICTED = ("deflate", "lzw", "zstd")
#: The most each compression can enlarge a strip (LZW: 12-bit codes for 8-bit bytes).
_WORST_GROWTH = {"deflate": 1.01, "lzw": 1.51, "zstd": 1.01, "packbits": 2.0, "none": 1.0}
#: Pixel data above this many bytes is written as BigTIFF (classic TIFF offsets are 32-bit).
BIGTIFF_BYTES = (1 << 32) - (1 << 26)


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[list[str]]:
    """tifffile's log messages (it logs what it repairs in damaged files) collected instead
    of printed on stderr."""
    logger = logging.getLogger("tifffile")
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def describe(data: bytes) -> str | None:
    """The first image's layout, as tifffile reads it (``float64 RGB, 3 samples per pixel``),
    or None if tifffile cannot read the file's directory either."""
    import io

    try:
        with _quiet_tifffile():
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages.first
                kind = getattr(page.photometric, "name", str(page.photometric))
                count = int(page.samplesperpixel)
                return f"{page.dtype} {kind}, {count} sample{'s' if count > 1 else ''} per pixel"
    except Exception:
        return None


def is_tiff(head: bytes) -> bool:
    return head[:4] in MAGIC


class Unsupported(Exception):
    """The TIFF is valid but not one this reader streams (the caller decodes it whole)."""


#: The tags the reader uses: layout, data, predictor, tiles, samples, the metadata kept.
_USED_TAGS = frozenset(
    {256, 257, 258, 259, 262, 266, 270, 271, 272, 273, 274, 277, 278, 279, 282, 283, 284, 296,
     305, 306, 315, 317, 322, 323, 324, 325, 338, 339, 347, 530, 532, 33432, 34675}
)  # fmt: skip


def _harmless(complaint: str) -> bool:
    """Whether tifffile's complaint is about one tag that the reader does not use."""
    found = re.findall(r"TiffTag (\d+)", complaint)
    return len(set(found)) == 1 and int(found[0]) not in _USED_TAGS


def _tag_note(complaint: str) -> str:
    """A harmless complaint as a note: ``TIFF tag 65000 ignored (invalid data type 99)``."""
    found = re.search(r"TiffTag (\d+) @\d+> ([^'\"]*)", complaint)
    if found is None:
        return f"TIFF tag ignored ({complaint[:160]})"
    return f"TIFF tag {found.group(1)} ignored ({found.group(2).strip()[:160]})"


def _dpi(tags: Any) -> tuple[float, float] | None:
    """Dots per inch from XResolution, YResolution and ResolutionUnit (None: not given)."""
    x, y = tags.valueof(282), tags.valueof(283)
    unit = tags.valueof(296, 2)
    try:
        xs, ys = (v[0] / v[1] if isinstance(v, tuple) else float(v) for v in (x, y))
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    if int(unit) == 3:  # per centimetre
        xs, ys = xs * 2.54, ys * 2.54
    elif int(unit) != 2:  # no absolute unit
        return None
    return (xs, ys) if xs > 0 and ys > 0 else None


class TiffRows:
    """A TIFF's first image as a lazy ``(height, width, channels)`` array of its samples."""

    def __init__(self, path: str, name: str) -> None:
        self.name = name
        self._fd = -1
        with _quiet_tifffile() as complaints:
            try:
                self._parse(path, name)
            except (Unsupported, ImageReadError):
                raise
            except Exception as exc:  # tifffile on a damaged file: let Pillow's decoder say
                raise Unsupported(f"{type(exc).__name__}: {exc}") from None
        #: what tifffile said of tags this reader does not use (a private tag of an invalid
        #: type, say: libtiff warns and reads on), for the image's notes
        self.notes = [_tag_note(c) for c in complaints if _harmless(c)]
        if len(self.notes) < len(complaints):  # tifffile repaired something: Pillow decides
            raise Unsupported(next(c for c in complaints if not _harmless(c)))
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        per_plane = self.strips_down * self.across
        need = per_plane * self.planes
        beyond = [k for k in range(need) if self.offsets[k] + self.counts[k] > self._size]
        if beyond:  # found now, before any output is allocated or anything is filtered
            os.close(self._fd)
            down = sorted({(k % per_plane) // self.across for k in beyond})
            top = down[0] * self.strip_rows
            last = min(self.shape[0], (down[-1] + 1) * self.strip_rows) - 1
            raise ImageReadError(f"{name}: truncated TIFF: rows {top}-{last} are missing")
        if self.raw:  # rows are read straight from the file: bands of about RAW_BAND_BYTES
            self.band_rows = max(1, min(self.strip_rows, RAW_BAND_BYTES // self.row_bytes))
            self.bands = -(-self.shape[0] // self.band_rows)
        self._cache: OrderedDict[int, NDArray[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._busy: dict[int, threading.Event] = {}

    def _parse(self, path: str, name: str) -> None:
        import tifffile

        tif = tifffile.TiffFile(path)
        try:
            page = tif.pages.first
            self._check(page, tifffile)
            spp = int(page.samplesperpixel)
            self.planar = page.planarconfig != tifffile.PLANARCONFIG.CONTIG and spp > 1
            #: samples per pixel in the file, and in a decoded strip or tile
            self.file_channels = spp
            self.segment_channels = 1 if self.planar else spp
            self.planes = spp if self.planar else 1
            colour = 1 if page.photometric == tifffile.PHOTOMETRIC.MINISBLACK else 3
            extra = tuple(int(v) for v in page.extrasamples)
            alpha = bool(extra) and extra[0] == tifffile.EXTRASAMPLE.UNASSALPHA
            # samples kept: colour, and alpha if the first extra sample is straight alpha;
            # unspecified extra samples are dropped (as Pillow's RGBX and libtiff do)
            self.shape = (int(page.imagelength), int(page.imagewidth), colour + int(alpha))
            if min(self.shape) < 1:
                raise Unsupported("empty image")
            tags = page.tags
            self.orientation = int(tags.valueof(274, 1) or 1)  #: EXIF/TIFF Orientation
            self.icc_profile = tags.valueof(34675)  #: InterColorProfile, bytes or None
            self.dpi = _dpi(tags)
            #: the text tags by number (image_io keeps the descriptive ones: ImageDescription,
            #: Make, ..., and drops tifffile's own JSON shape description)
            self.text_tags = {
                int(tag.code): tag.value for tag in tags.values() if isinstance(tag.value, str)
            }
            self.dtype = np.dtype(page.dtype)
            self.ndim = 3
            self.tiled = bool(page.is_tiled)
            #: rows per strip (or tile) in the file
            self.strip_rows = int(page.tilelength if self.tiled else page.rowsperstrip)
            self.strip_rows = max(1, min(self.strip_rows, self.shape[0]))
            self.tile_width = int(page.tilewidth) if self.tiled else self.shape[1]
            if self.tile_width < 1:
                raise Unsupported("tiles of width 0")
            self.across = -(-self.shape[1] // self.tile_width)
            self.offsets = [int(v) for v in page.dataoffsets]
            self.counts = [int(v) for v in page.databytecounts]
            self.strips_down = -(-self.shape[0] // self.strip_rows)
            need = self.strips_down * self.across * self.planes
            if len(self.offsets) < need or len(self.counts) < need:
                raise ImageReadError(f"{name}: cannot decode image (TIFF lists too few strips)")
            #: uncompressed strips: any run of rows is read from the file as it is, so a file
            #: written as one strip (tifffile's and numpy writers' default) is not read whole
            self.raw = (
                not self.tiled
                and page.compression == tifffile.COMPRESSION.NONE
                and page.predictor in (None, 0, 1)
                and page.fillorder in (None, 1)
            )
            #: bytes of one row of one plane (of every sample when contiguous) in the file
            self.row_bytes = self.shape[1] * self.segment_channels * self.dtype.itemsize
            self.file_dtype = self.dtype.newbyteorder(tif.byteorder)
            #: rows per decoded band (the cache's unit): a strip, or less when raw
            self.band_rows = self.strip_rows
            self.bands = self.strips_down
            self._decode = page.decode
            self._jpegtables = page.jpegtables
        finally:
            tif.close()

    @staticmethod
    def _check(page: Any, tifffile: Any) -> None:
        tag = tifffile
        if page.photometric not in (tag.PHOTOMETRIC.MINISBLACK, tag.PHOTOMETRIC.RGB):
            raise Unsupported(f"photometric {page.photometric!r}")
        colour = 1 if page.photometric == tag.PHOTOMETRIC.MINISBLACK else 3
        extra = tuple(int(v) for v in page.extrasamples)
        if page.samplesperpixel != colour + len(extra):
            raise Unsupported("unexpected samples per pixel")
        if extra and extra[0] == tag.EXTRASAMPLE.ASSOCALPHA:
            raise Unsupported("associated (premultiplied) alpha")  # Pillow un-premultiplies
        if np.dtype(page.dtype) not in (np.uint8, np.uint16, np.float32):
            raise Unsupported(f"sample type {page.dtype}")
        if page.bitspersample not in (8, 16, 32) or page.is_subsampled:
            raise Unsupported("packed or subsampled samples")
        try:
            tifffile.TIFF.DECOMPRESSORS[page.compression]
        except Exception:
            raise Unsupported(f"compression {page.compression!r}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # pragma: no cover - closed explicitly in normal use
        try:
            self.close()
        except Exception:
            pass

    # -- decoding --------------------------------------------------------------------------

    def _band(self, index: int) -> NDArray[Any]:
        """Rows ``[index * band_rows, ...)`` decoded, from the cache when there."""
        while True:
            with self._lock:
                if index in self._cache:
                    self._cache.move_to_end(index)
                    return self._cache[index]
                event = self._busy.get(index)
                if event is None:
                    event = self._busy[index] = threading.Event()
                    break
            event.wait()  # another thread is decoding this band
        try:
            band = self._read_band(index)
        finally:
            with self._lock:
                self._busy.pop(index, None)
            event.set()
        with self._lock:
            self._cache[index] = band
            total = sum(b.nbytes for b in self._cache.values())
            while total > CACHE_BYTES and len(self._cache) > 2:
                _, old = self._cache.popitem(last=False)
                total -= old.nbytes
        return band

    def _read_raw(self, top: int, rows: int) -> NDArray[Any]:
        """Rows ``[top, top + rows)`` of an uncompressed, strip-organised image, read from
        the file as they are stored (the strips they cross, each in part)."""
        out = np.empty((rows, self.shape[1], self.file_channels), self.dtype)
        for plane in range(self.planes):
            part = out[..., plane : plane + 1] if self.planar else out
            self._read_raw_plane(plane, top, rows, part)
        return out if self.file_channels == self.shape[2] else out[..., : self.shape[2]].copy()

    def _read_raw_plane(self, plane: int, top: int, rows: int, out: NDArray[Any]) -> None:
        y = top
        while y < top + rows:
            k = y // self.strip_rows + plane * self.strips_down
            first = y % self.strip_rows  # the row's place in its strip
            take = min(top + rows - y, self.strip_rows - first, self.shape[0] - y)
            start, length = first * self.row_bytes, take * self.row_bytes
            data = b""
            if start + length <= self.counts[k]:
                data = os.pread(self._fd, length, self.offsets[k] + start)
            if len(data) != length:
                strip_top = y - first
                end = min(self.shape[0], strip_top + self.strip_rows) - 1
                raise ImageReadError(
                    f"{self.name}: cannot decode TIFF rows {strip_top}-{end} (the strip holds "
                    f"{self.counts[k]} bytes, fewer than its rows need)"
                )
            samples = np.frombuffer(data, self.file_dtype)
            out[y - top : y - top + take] = samples.reshape(take, -1, self.segment_channels)
            y += take

    def _read_band(self, index: int) -> NDArray[Any]:
        height, width, channels = self.shape
        top = index * self.band_rows
        rows = min(self.band_rows, height - top)
        if self.raw:
            return self._read_raw(top, rows)
        where = f"rows {top}-{top + rows - 1}"
        out = np.empty((rows, width, self.file_channels), self.dtype)
        per_plane = self.strips_down * self.across
        for plane in range(self.planes):
            for j in range(self.across):
                k = plane * per_plane + index * self.across + j
                self._decode_segment(k, plane, j, rows, where, out)
        return out if self.file_channels == channels else out[..., :channels].copy()

    def _decode_segment(
        self, k: int, plane: int, j: int, rows: int, where: str, out: NDArray[Any]
    ) -> None:
        """Strip or tile ``k`` (of ``plane``, ``j``-th across) into its rows of ``out``."""
        width = self.shape[1]
        offset, count = self.offsets[k], self.counts[k]
        if offset + count > self._size:
            raise ImageReadError(f"{self.name}: truncated TIFF: {where} are missing")
        data = os.pread(self._fd, count, offset)
        try:
            with _quiet_tifffile() as complaints:
                segment, _, _ = self._decode(data, k, jpegtables=self._jpegtables)
            if complaints:
                raise ValueError(complaints[0])
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ImageReadError(
                f"{self.name}: cannot decode TIFF {where} ({reason[:200]})"
            ) from None
        if segment is None:
            raise ImageReadError(f"{self.name}: cannot decode TIFF {where} (empty strip)")
        x0 = j * self.tile_width
        x1 = min(width, x0 + self.tile_width)
        target = out[:, x0:x1, plane : plane + 1] if self.planar else out[:, x0:x1]
        try:
            seg = np.asarray(segment).reshape(-1, segment.shape[-2], self.segment_channels)
            target[...] = seg[:rows, : x1 - x0]
        except ValueError:  # a segment smaller than the tags say
            raise ImageReadError(
                f"{self.name}: cannot decode TIFF {where} (a strip or tile holds "
                f"{np.asarray(segment).size} samples, fewer than its tags say)"
            ) from None

    def __getitem__(self, rows: slice | NDArray[np.intp]) -> NDArray[Any]:
        height = self.shape[0]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(height)
            if step != 1:
                return self[np.arange(start, stop, step)]
            out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
            y = start
            while y < stop:
                band = self._band(y // self.band_rows)
                lo = y - (y // self.band_rows) * self.band_rows
                take = min(stop - y, band.shape[0] - lo)
                out[y - start : y - start + take] = band[lo : lo + take]
                y += take
            return out
        if isinstance(rows, (int, np.integer)):  # one row, as numpy gives it
            return self[np.array([rows], np.intp)][0]
        index = row_index(rows, height)
        out = np.empty((index.size, *self.shape[1:]), self.dtype)
        for i, y in enumerate(index.tolist()):
            band = self._band(y // self.band_rows)
            out[i] = band[y - (y // self.band_rows) * self.band_rows]
        return out

    def strips(self) -> Iterator[NDArray[Any]]:
        """The image band by band, top to bottom."""
        for i in range(self.bands):
            yield self._band(i)


# -- writing ---------------------------------------------------------------------------------


def _predict(block: NDArray[Any]) -> NDArray[Any]:
    """TIFF predictor 2: each sample minus its left neighbour's (modulo the type's range)."""
    out = block.copy()
    np.subtract(block[:, 1:], block[:, :-1], out=out[:, 1:])
    return out


def _encode_strip(block: NDArray[Any], compression: str = DEFAULT_COMPRESSION) -> bytes:
    """One strip's bytes: predicted (integers, with deflate, LZW and zstd), little-endian,
    compressed."""
    if block.dtype != np.float32 and compression in PREDICTED:
        block = _predict(block)
    data = np.ascontiguousarray(block).astype(block.dtype.newbyteorder("<"), copy=False)
    if compression == "deflate":
        return (isal_zlib() or zlib).compress(data.tobytes(), DEFLATE_LEVEL)
    if compression == "none":
        return data.tobytes()
    import imagecodecs

    if compression == "lzw":
        return bytes(imagecodecs.lzw_encode(data.tobytes()))
    if compression == "zstd":
        return bytes(imagecodecs.zstd_encode(data.tobytes(), level=ZSTD_LEVEL))
    if compression == "packbits":  # row by row: a run never crosses a row (TIFF 6.0, p. 42)
        rows = data.reshape(data.shape[0], -1).view(np.uint8)
        return bytes(imagecodecs.packbits_encode(rows, axis=-1))
    raise ValueError(f"unknown TIFF compression {compression!r}")


def _rechunk(strips: Iterable[NDArray[Any]], rows: int) -> Iterator[NDArray[Any]]:
    """The same rows in blocks of ``rows`` (the last may be shorter)."""
    buffered: deque[NDArray[Any]] = deque()
    have = 0
    for strip in strips:
        buffered.append(strip)
        have += strip.shape[0]
        while have >= rows:
            parts, need = [], rows
            while need:
                head = buffered[0]
                if head.shape[0] <= need:
                    parts.append(buffered.popleft())
                    need -= head.shape[0]
                else:
                    parts.append(head[:need])
                    buffered[0] = head[need:]
                    need = 0
            have -= rows
            yield parts[0] if len(parts) == 1 else np.concatenate(parts)
    if have:
        yield np.concatenate(list(buffered)) if len(buffered) > 1 else buffered[0]


def write_tiff(
    fh: BinaryIO,
    strips: Iterable[NDArray[Any]],
    *,
    height: int,
    width: int,
    bands: str,
    dtype: Any,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    tags: dict[int, Any] | None = None,
    pool: ThreadPoolExecutor | None = None,
    workers: int = 1,
    compression: str = DEFAULT_COMPRESSION,
) -> None:
    """Write ``(rows, width, channels)`` output strips, in order, as one TIFF image.

    ``tags``: descriptive first-IFD tags to keep (ASCII values by tag number).
    ``compression``: a name of :data:`COMPRESSIONS`.
    """
    import tifffile

    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown TIFF compression {compression!r}")
    dtype = np.dtype(dtype)
    channels = len(bands)
    row_bytes = width * channels * dtype.itemsize
    rows_per_strip = max(1, min(height, STRIP_BYTES // max(1, row_bytes)))
    # the largest the strips can become: LZW's 9-12-bit codes can make data of no
    # repetition (noise) about 1.4x larger; deflate and zstd add under 1%
    growth = _WORST_GROWTH[compression]
    if compression == "packbits":  # a header byte per run of at most 128 bytes, per row
        growth = (row_bytes + -(-row_bytes // 128)) / max(1, row_bytes)
    bigtiff = height * row_bytes * growth > BIGTIFF_BYTES

    def encoded() -> Iterator[bytes]:
        pending: deque[Future | bytes] = deque()
        for block in _rechunk(strips, rows_per_strip):
            if pool is not None and workers > 1:
                pending.append(pool.submit(_encode_strip, block, compression))
                while len(pending) > 2 * workers:
                    item = pending.popleft()
                    yield item.result() if isinstance(item, Future) else item
            else:
                yield _encode_strip(block, compression)
        while pending:
            item = pending.popleft()
            yield item.result() if isinstance(item, Future) else item

    extratags = []
    software: str | bool = False
    description = None
    for code, value in sorted((tags or {}).items()):
        if code == 305:
            software = str(value)
        elif code == 270:
            description = str(value)
        elif isinstance(value, str):
            extratags.append((code, "s", 0, value, True))
        elif isinstance(value, int):
            extratags.append((code, "H", 1, value, True))
    options: dict[str, Any] = {}
    if dpi:
        options["resolution"] = (float(dpi[0]), float(dpi[1]))
        options["resolutionunit"] = "INCH"
    if icc_profile:
        options["iccprofile"] = icc_profile
    if bands in ("LA", "RGBA"):
        options["extrasamples"] = ("unassalpha",)
    with _quiet_tifffile(), tifffile.TiffWriter(fh, bigtiff=bigtiff, byteorder="<") as tw:
        tw.write(
            encoded(),
            shape=(height, width, channels) if channels > 1 else (height, width),
            dtype=dtype,
            photometric="rgb" if bands.startswith("RGB") else "minisblack",
            planarconfig="contig" if channels > 1 else None,
            compression=COMPRESSIONS[compression] if compression != "none" else None,
            predictor=dtype != np.float32 and compression in PREDICTED,
            rowsperstrip=rows_per_strip,
            metadata=None,
            description=description,
            software=software,
            extratags=extratags,
            **options,
        )
