"""convcli's PNG encoder: 8- and 16-bit L, LA, RGB and RGBA, written strip by strip.

Every row gets the PNG ``Up`` filter (the difference from the row above, in
bytes, modulo 256: one subtraction, no per-row search).  Blocks of about 1 MiB
of rows are deflated each on its own, on all cores, and their deflate streams
are joined as pigz does: every block but the last ends with a sync flush (an
empty stored block on a byte boundary), so the joined bytes are one valid zlib
stream, whose Adler-32 is kept as the blocks are written in order.  The blocks
depend on the image's width alone, not on the strips the rows arrive in nor on
the thread count, so the same image always gives the same file.  Deflate is ISA-L's
(``isal``) at the default and lower levels and zlib's above.

``--compress-level`` (0-9) maps to: 0 stored (no compression); 1, 2, 3 ISA-L
levels 0, 1, 2 (3 is the default); 4-9 zlib levels 4-9 (smaller and several
times slower).  Measured on a 12-MP photo (``benchmarks/bench_e2e.py``) the
default writes a file within a few per cent of Pillow's level 3 (which
filters every row adaptively) more than ten times faster; on the sample
images it is 5% smaller to 8% larger.

The ICC profile (``iCCP``), DPI (``pHYs``) and EXIF (``eXIf``) are written
before the image data.  The writer takes rows in order and holds only the
strips being compressed, so a PNG of any size is written in bounded memory.
"""

from __future__ import annotations

import struct
import threading
import warnings
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, NoReturn

import numpy as np
from numpy.typing import NDArray

from ._blocks import RowBlocks, abandon, isal_zlib, row_index

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {"L": 0, "LA": 4, "RGB": 2, "RGBA": 6}
DEFAULT_LEVEL = 3
#: Largest IDAT chunk written (PNG allows 2**31 - 1 bytes).
_MAX_CHUNK = 1 << 24


def chunk(ctype: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC."""
    crc = zlib.crc32(body, zlib.crc32(ctype)) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def _compressor(level: int) -> Any:
    fast = isal_zlib()
    if level == 0:
        return zlib.compressobj(0, zlib.DEFLATED, -15)
    if level <= 3 and fast is not None:
        return fast.compressobj(level - 1, fast.DEFLATED, -15)
    return zlib.compressobj(level, zlib.DEFLATED, -15)


def _adler32(data: bytes, value: int) -> int:
    fast = isal_zlib()
    if fast is not None:
        return fast.adler32(data, value)
    return zlib.adler32(data, value)


def header_chunks(
    width: int,
    height: int,
    bands: str,
    bit_depth: int,
    *,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    exif: bytes | None = None,
) -> bytes:
    """The signature and every chunk before the image data."""
    parts = [
        SIGNATURE,
        chunk(
            b"IHDR",
            struct.pack(">IIBBBBB", width, height, bit_depth, COLOUR_TYPES[bands], 0, 0, 0),
        ),
    ]
    if icc_profile:
        parts.append(chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile)))
    if dpi:
        ppm = (round(dpi[0] / 0.0254), round(dpi[1] / 0.0254))
        parts.append(chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        parts.append(chunk(b"eXIf", body))
    return b"".join(parts)


def _filtered(strip: NDArray[Any], previous: NDArray[np.uint8] | None) -> bytes:
    """The strip's rows as PNG scanlines with the Up filter (filter byte 2)."""
    rows = strip.shape[0]
    if strip.dtype == np.uint16:
        strip = strip.astype(">u2")
    data = np.ascontiguousarray(strip).view(np.uint8).reshape(rows, -1)
    out = np.empty((rows, data.shape[1] + 1), np.uint8)
    out[:, 0] = 2
    if previous is None:
        out[0, 1:] = data[0]  # the row above the first row counts as zeros
    else:
        np.subtract(data[0], previous, out=out[0, 1:])
    np.subtract(data[1:], data[:-1], out=out[1:, 1:])
    return out.tobytes()


def _deflate(data: bytes, level: int, last: bool) -> bytes:
    c = _compressor(level)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class PngWriter:
    """Write a PNG to a binary file strip by strip: :meth:`write` each strip of
    ``(rows, width, channels)`` uint8 or uint16 samples in order, then :meth:`close`."""

    def __init__(
        self,
        fh: BinaryIO,
        width: int,
        height: int,
        bands: str,
        dtype: Any,
        *,
        level: int = DEFAULT_LEVEL,
        icc_profile: bytes | None = None,
        dpi: tuple[float, float] | None = None,
        exif: bytes | None = None,
        pool: ThreadPoolExecutor | None = None,
        workers: int = 1,
    ) -> None:
        if bands not in COLOUR_TYPES:
            raise ValueError(f"PNG bands must be L, LA, RGB or RGBA, got {bands!r}")
        if not 0 <= level <= 9:
            raise ValueError(f"PNG compression level must be 0..9, got {level}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise ValueError(f"PNG samples must be uint8 or uint16, got {self.dtype}")
        self.fh, self.width, self.height, self.bands = fh, width, height, bands
        self.channels = len(bands)
        self.level = level
        self.pool = pool if workers > 1 else None
        self.ahead = max(1, 2 * workers)
        self.adler = 1
        self.previous: NDArray[np.uint8] | None = None
        self.pending: deque[Future | tuple[bytes, bytes]] = deque()
        row_bytes = width * self.channels * self.dtype.itemsize + 1
        #: Rows deflated together: about 1 MiB of scanlines.
        self.block_rows = max(1, (1 << 20) // row_bytes)
        self.blocks = RowBlocks(height, self.block_rows, "PNG")
        self.done_rows = 0
        bit_depth = 8 if self.dtype == np.uint8 else 16
        fh.write(
            header_chunks(
                width, height, bands, bit_depth, icc_profile=icc_profile, dpi=dpi, exif=exif
            )
        )

    def _emit(self, item: Future | tuple[bytes, bytes]) -> None:
        data, packed = item.result() if isinstance(item, Future) else item
        self.adler = _adler32(data, self.adler)
        if self.done_rows == self.height and not self.pending:
            packed += struct.pack(">I", self.adler & 0xFFFFFFFF)
        for start in range(0, len(packed), _MAX_CHUNK):
            self.fh.write(chunk(b"IDAT", packed[start : start + _MAX_CHUNK]))

    def _job(self, strip: NDArray[Any], previous: NDArray[np.uint8] | None, last: bool):
        data = _filtered(strip, previous)
        return data, _deflate(data, self.level, last)

    def write(self, strip: NDArray[Any]) -> None:
        """Add the next rows (``(rows, width, channels)``, the writer's sample type).

        Rows are deflated in blocks of :attr:`block_rows` whatever the strips they come in,
        so the file's bytes depend on the image alone."""
        if strip.ndim == 2:
            strip = strip[:, :, np.newaxis]
        if strip.shape[1:] != (self.width, self.channels) or strip.dtype != self.dtype:
            raise ValueError(
                f"strip of shape {strip.shape} and type {strip.dtype} does not fit a "
                f"{self.width}-wide {self.bands} {self.dtype} PNG"
            )
        first = self.blocks.rows == 0
        blocks = self.blocks.add(strip)
        if first and self.blocks.rows:  # the zlib header (deflate, 32 KiB window) first
            self.pending.append((b"", b"\x78\x01"))
        for block in blocks:
            self._block(block)

    def _block(self, block: NDArray[Any]) -> None:
        """Deflate the next rows as one block."""
        self.done_rows += block.shape[0]
        last = self.done_rows == self.height
        previous = self.previous
        tail = block[-1:]
        if tail.dtype == np.uint16:
            tail = tail.astype(">u2")
        self.previous = np.ascontiguousarray(tail).view(np.uint8).reshape(-1).copy()
        if self.pool is not None:
            self.pending.append(self.pool.submit(self._job, block, previous, last))
        else:
            self.pending.append(self._job(block, previous, last))
        while len(self.pending) > self.ahead or (
            self.pending and not isinstance(self.pending[0], Future)
        ):
            self._emit(self.pending.popleft())

    def close(self) -> None:
        """Write what is left and the end of the file; every row must have been written."""
        self.blocks.check_complete()
        while self.pending:
            self._emit(self.pending.popleft())
        self.fh.write(chunk(b"IEND", b""))

    def abort(self) -> None:
        """Wait for the strips still being compressed (after a failure), writing nothing."""
        abandon(self.pending)
        self.pending.clear()


def encode_png(
    samples: NDArray[Any],
    bands: str,
    *,
    level: int = DEFAULT_LEVEL,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    exif: bytes | None = None,
) -> bytes:
    """A whole image's PNG bytes (``(H, W, C)`` uint8 or uint16 samples), one thread."""
    import io

    height, width = samples.shape[:2]
    buf = io.BytesIO()
    writer = PngWriter(
        buf, width, height, bands, samples.dtype, level=level,
        icc_profile=icc_profile, dpi=dpi, exif=exif,
    )  # fmt: skip
    step = 256
    for start in range(0, height, step):
        writer.write(samples[start : start + step])
    writer.close()
    return buf.getvalue()


# -- reading by rows -------------------------------------------------------------------------

#: Compressed bytes read (and inflated) at a time: an IDAT chunk of any size is read in pieces
#: of at most this size, its CRC summed as they come and compared after its last piece.
_PIECE = 1 << 18
_IDAT_CRC = zlib.crc32(b"IDAT")
#: Image data past the last row that is inflated (and dropped) to reach the Adler-32.
_SURPLUS = 1 << 28


def _crc32() -> Any:
    """The fastest CRC-32 at hand: ISA-L's (over ten times zlib's), else zlib's."""
    fast = isal_zlib()
    return fast.crc32 if fast is not None else zlib.crc32


def _checksum_error(exc: Exception) -> bool:
    """Whether an inflate error says the zlib stream's Adler-32 does not match its data
    (zlib: "incorrect data check", ISA-L: "Incorrect checksum found")."""
    text = str(exc).lower()
    return "data check" in text or "checksum" in text


class Unsupported(Exception):
    """A valid PNG this reader does not stream (the caller decodes it whole)."""


class PngRows:
    """A non-interlaced PNG of any colour type and bit depth as a lazy ``(height, width,
    channels)`` array, decoded front to back as rows are asked for.

    The samples are those of the whole-image path (Pillow, then ``image_io._from_pil``): a
    palette (1-8 bits) gives RGB, or RGBA with a tRNS chunk (entries past the PLTE black,
    past the tRNS opaque); 1/2/4-bit grey is scaled to 8 bits (0/255, x85, x17); a tRNS
    colour key on grey or RGB (compared on the raw values) adds an alpha channel, 0 at the
    key and the top value elsewhere, at the image's depth.  A palette image without a PLTE
    of 1-256 entries before its image data is an error.  Rows below 8 bits are unfiltered
    with 1 byte per pixel, as the PNG specification has it.

    Rows are inflated (ISA-L) and unfiltered block by block; only the most recent rows
    are kept (:meth:`retain` says how many the caller may still ask for again), so a PNG
    of any size is read in bounded memory.

    Every checksum is enforced, as libpng does by default: each IDAT chunk's CRC as the chunk
    is read (a chunk of at most 256 KiB before any of it is inflated, a bigger one when its
    last piece is read); after the last row the rest of the zlib stream is inflated, so that
    its Adler-32 is checked and its end reached, with no IDAT data after it (image data past
    the last row, which libpng ignores with a warning, is inflated and dropped, up to 256 MiB
    of it).  A CRC mismatch in another critical chunk (IHDR, PLTE, IEND) is an error too; one
    in an ancillary chunk is a warning, and the chunk is ignored (its name is added to
    :attr:`damaged`).

    Damage raises :class:`~convcli.errors.ImageReadError`, one line naming the file and the
    first row that could not be produced: the row whose filter type is invalid, the row the
    data runs out in (``cannot decode PNG at row 290 (file cut short)``), the row the
    compressed data stops inflating in, the first row an IDAT chunk that fails its CRC holds
    (``at row 2958 (IDAT chunk CRC mismatch: the chunk holds rows 2958-3011)``), or ``after
    row N, its last`` for damage past the image's rows.  The error comes from the request
    that meets it (a request for the last rows, when only the end of the stream is wrong),
    and from every later one.
    """

    sequential = True  #: rows far behind the last ones asked for are gone

    def __init__(self, path: str, name: str) -> None:
        from .errors import ImageReadError

        self.name = name
        self._error = ImageReadError
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._scan()
        except BaseException:
            self._fh.close()
            raise

    def _scan(self) -> None:
        fh = self._fh
        crc = self._crc = _crc32()
        if fh.read(8) != SIGNATURE:
            raise Unsupported("not a PNG")
        head = fh.read(8)
        if len(head) < 8 or head != b"\x00\x00\x00\x0dIHDR":
            raise Unsupported("no IHDR")
        ihdr = fh.read(17)
        if len(ihdr) < 17:
            raise Unsupported("short IHDR")
        if crc(ihdr[:13], crc(b"IHDR")) != int.from_bytes(ihdr[13:], "big"):
            raise self._error(f"{self.name}: cannot decode PNG (IHDR chunk CRC mismatch)")
        width, height, bit_depth, colour, compression, filtering, interlace = struct.unpack(
            ">IIBBBBB", ihdr[:13]
        )
        valid = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
        if bit_depth not in valid.get(colour, ()) or interlace or compression or filtering:
            raise Unsupported("interlaced, or not a valid PNG layout")
        if width == 0 or height == 0:
            raise Unsupported("empty")
        self.colour, self.bit_depth = colour, bit_depth
        #: The file's colour type as bands ("P": palette), before any table or key.
        self.file_bands = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}[colour]
        self._height, self._width = height, width
        samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]  # per pixel, in the file
        #: Bytes per complete pixel for the unfilter (1 below 8 bits), and per row.
        self.bpp = max(1, samples * bit_depth // 8)
        self.stride = (width * samples * bit_depth + 7) // 8
        self._idat: list[tuple[int, int]] = []  # (offset, length) of every IDAT chunk
        self.exif: bytes | None = None  #: the eXIf chunk, as Pillow gives it
        #: Ancillary chunks ignored because their CRC does not match (libpng's default).
        self.damaged: list[str] = []
        self._ended = False  # an IEND chunk was found
        palette: bytes | None = None  # the PLTE chunk before the image data
        trns: bytes | None = None  # the tRNS chunk before the image data
        while True:
            header = fh.read(8)
            if len(header) < 8:
                break
            length = int.from_bytes(header[:4], "big")
            ctype = header[4:]
            if ctype == b"tRNS" and (self._idat or length > 256 * 3):
                raise Unsupported("tRNS after the image data, or too long")
            # the palette: before the image data (a PLTE after it is checked and ignored);
            # in an image of another colour type it is a suggestion, ignored
            palette_here = ctype == b"PLTE" and colour == 3 and not self._idat
            if palette_here and length > 256 * 3:
                raise self._error(
                    f"{self.name}: cannot decode PNG (invalid PLTE chunk of {length} bytes: not "
                    "1 to 256 RGB entries)"
                )
            if ctype == b"IDAT":  # checked as it is read
                self._idat.append((fh.tell(), length))
                fh.seek(length + 4, 1)
                continue
            keep = (ctype == b"eXIf" and length <= 1 << 20) or ctype == b"tRNS" or palette_here
            checked = self._check_chunk(ctype, length, keep)
            if checked is None:  # the file ends inside the chunk
                break
            intact, body = checked
            if not intact:
                what = ctype.decode("ascii", "backslashreplace")
                if not ctype[0] & 0x20:  # a critical chunk: libpng stops
                    raise self._error(f"{self.name}: cannot decode PNG ({what} chunk CRC mismatch)")
                self.damaged.append(what)  # an ancillary one: libpng warns and ignores it
                warnings.warn(f"PNG {what} chunk CRC mismatch: chunk ignored", stacklevel=2)
                continue
            if ctype == b"eXIf":
                self.exif = b"Exif\x00\x00" + body
            elif palette_here:
                palette = body
            elif ctype == b"tRNS":
                trns = body
            elif ctype == b"IEND":
                self._ended = True
                break
        self._layout(palette, trns)
        if not self._idat:
            raise Unsupported("no image data")
        self._check_zlib_header()
        self._retain = 1 << 30
        self._lock = threading.Lock()
        self.rewind()

    def _check_zlib_header(self) -> None:
        """The image data's first two bytes must be a zlib header as PNG has it (deflate, a
        window of at most 32 KiB, a valid check, no preset dictionary), as zlib and libpng
        require (ISA-L takes some invalid ones, or names a bad header a checksum failure)."""
        head = b""
        for offset, length in self._idat:
            if len(head) >= 2:
                break
            self._fh.seek(offset)
            head += self._fh.read(min(length, 2 - len(head)))
        if len(head) < 2:
            return  # the data is cut short: reading the rows says where
        cmf, flg = head[0], head[1]
        if cmf & 0x0F != 8 or cmf >> 4 > 7 or (cmf * 256 + flg) % 31 or flg & 0x20:
            raise self._error(
                f"{self.name}: cannot decode PNG at row 0 (invalid zlib header "
                f"{head[:2].hex()}: not deflate with a window of at most 32 KiB)"
            )

    def _layout(self, palette: bytes | None, trns: bytes | None) -> None:
        """The samples given for the file's colour type, bit depth, PLTE and tRNS: the bands,
        sample type and shape of :meth:`_samples`'s output, as the whole-image path (Pillow's
        decoder, then ``image_io._from_pil``) gives them."""
        colour, depth = self.colour, self.bit_depth
        self._lut: NDArray[np.uint8] | None = None  # raw value -> output samples (8 bits)
        self._key: NDArray[np.int64] | None = None  # a colour key compared on raw values
        if colour == 3:
            if palette is None:
                raise self._error(f"{self.name}: cannot decode PNG (palette image without PLTE)")
            if not palette or len(palette) % 3:
                raise self._error(
                    f"{self.name}: cannot decode PNG (invalid PLTE chunk of {len(palette)} "
                    "bytes: not 1 to 256 RGB entries)"
                )
            # entries past the PLTE are black, and past the tRNS opaque (as Pillow gives them)
            channels = 3 if trns is None else 4
            lut = np.zeros((256, channels), np.uint8)
            lut[: len(palette) // 3, :3] = np.frombuffer(palette, np.uint8).reshape(-1, 3)
            if trns is not None:
                if len(trns) > 256:
                    raise Unsupported("tRNS longer than a palette")
                lut[:, 3] = 255
                lut[: len(trns), 3] = np.frombuffer(trns, np.uint8)
            self._lut, bands = lut, "RGB" if trns is None else "RGBA"
        elif trns is not None and colour not in (0, 2):
            raise Unsupported("tRNS in an image with an alpha channel")
        elif trns is not None and len(trns) != (2 if colour == 0 else 6):
            raise Unsupported("tRNS of an unexpected length")
        elif colour == 0 and depth <= 8:
            # grey of 1-8 bits: a table of its 2**depth values, scaled to 8 bits (1 bit:
            # 0/255, 2 bits: *85, 4 bits: *17), with alpha 0 at the key if there is one
            values = np.arange(1 << depth)
            scaled = values * (255 // ((1 << depth) - 1))
            if trns is None:
                if depth < 8:
                    self._lut = scaled.astype(np.uint8)[:, np.newaxis]
                bands = "L"
            else:
                key = int.from_bytes(trns, "big")
                if depth == 1:  # Pillow's "1" mode: any key but 0 is the value 1
                    key = 1 if key else 0
                alpha = np.where(values == key, 0, 255)
                self._lut = np.stack([scaled, alpha], axis=1).astype(np.uint8)
                bands = "LA"
        else:  # 8/16-bit grey, grey+alpha, RGB, RGBA, grey 16 or RGB with a colour key
            bands = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}[colour]
            if trns is not None:
                self._key = np.frombuffer(trns, ">u2").astype(np.int64)
                bands += "A"
        if self._lut is not None:  # each entry's samples as one 32-bit word (:meth:`_samples`)
            words = np.zeros((self._lut.shape[0], 4), np.uint8)
            words[:, : self._lut.shape[1]] = self._lut
            self._lut_words = words.view(np.uint32)[:, 0]
        self.bands = bands
        self.dtype = np.dtype(np.uint16 if depth == 16 else np.uint8)
        self.shape = (self._height, self._width, len(bands))
        self.ndim = 3

    def _check_chunk(self, ctype: bytes, length: int, keep: bool) -> tuple[bool, bytes] | None:
        """Read a chunk's data (the file being at it) and CRC: whether they match, and the data
        if ``keep`` (else ``b""``); None when the file ends first."""
        fh, crc = self._fh, self._crc
        value = crc(ctype)
        kept = []
        left = length
        while left:
            data = fh.read(min(left, _PIECE))
            if not data:
                return None
            value = crc(data, value)
            left -= len(data)
            if keep:
                kept.append(data)
        stored = fh.read(4)
        if len(stored) < 4:
            return None
        return value == int.from_bytes(stored, "big"), b"".join(kept)

    def rewind(self) -> None:
        """Start decoding again from the first row (for a second pass over the image)."""
        self._chunk = -1  # the IDAT chunk being read
        self._at = 0  # the file offset of its next byte
        self._left = 0  # its bytes not read yet
        self._sum = 0  # the CRC of its type and bytes read so far
        fast = isal_zlib()
        self._inflate = fast.decompressobj() if fast is not None else zlib.decompressobj()
        self._pending = b""  # inflated bytes not yet unfiltered
        self._prior = np.zeros(self.stride, np.uint8)  # the last row unfiltered
        self._rows: deque[NDArray[Any]] = deque()  # blocks of decoded rows, in order
        self._first = 0  # the first row held
        self._next = 0  # the first row not yet decoded
        self._broken: Exception | None = None
        self._failed = self.shape[0]  # the row the last error named

    def retain(self, rows: int) -> None:
        """Keep the rows from ``rows`` before the lowest row of each request on (the caller's
        windows in flight may still ask for them); older blocks of rows are dropped."""
        self._retain = max(1, rows)

    def close(self) -> None:
        self._fh.close()

    def __del__(self) -> None:  # pragma: no cover - closed explicitly in normal use
        try:
            self._fh.close()
        except Exception:
            pass

    # -- errors: each names the first row that could not be produced

    def _fail(self, row: int, why: str) -> NoReturn:
        height = self.shape[0]
        self._failed = row
        where = f"after row {height - 1}, its last" if row >= height else f"at row {row}"
        raise self._error(f"{self.name}: cannot decode PNG {where} ({why})")

    def _span(self, first: int, last: int) -> str:
        last = min(last, self.shape[0] - 1)
        return f"rows {first}-{last}" if last > first else f"row {first}"

    def _replay(self, count: int) -> tuple[list[int], Exception | None]:
        """Inflate the first ``count`` IDAT chunks again from the start, with zlib (which
        gives every byte its input holds) and no checks, up to the image's last row: the
        bytes inflated after each chunk, and the inflate error that stopped it (None if the
        data ran out or every row was there).  On errors only, to name their row: an inflate
        error is found again row by row, so the bytes before it are exact.  The deflate data
        is inflated raw, past the zlib header, so the Adler-32 at its end is not checked (a
        mismatch would take the last call's rows with it)."""
        row_bytes = self.stride + 1
        limit = self.shape[0] * row_bytes
        step = max(1, (1 << 16) // row_bytes) * row_bytes
        z = zlib.decompressobj(-15)
        header = 2  # the zlib header's bytes still to skip
        total, totals = 0, []
        error: Exception | None = None
        for offset, length in self._idat[:count]:
            self._fh.seek(offset)
            left = length
            while left and error is None and total < limit and not z.eof:
                data = self._fh.read(min(left, 1 << 16))
                if not data:  # the file ends here
                    break
                left -= len(data)
                data, header = data[header:], max(0, header - len(data))
                fine = False
                while data and total < limit and not z.eof:
                    saved = z.copy()
                    try:
                        out = z.decompress(data, (row_bytes if fine else step) - total % row_bytes)
                    except zlib.error as exc:
                        if fine:
                            error = exc
                            break
                        z, fine = saved, True  # that step again, a row at a time
                        continue
                    total += len(out)
                    data = z.unconsumed_tail
            totals.append(total)
        return totals, error

    def _cut(self) -> NoReturn:
        """The file ends inside the IDAT chunk being read."""
        totals, _ = self._replay(self._chunk + 1)
        self._fail(totals[-1] // (self.stride + 1), "file cut short")

    def _ran_out(self) -> NoReturn:
        """Every IDAT chunk was read, and the zlib stream has not ended."""
        totals, _ = self._replay(len(self._idat))
        row = totals[-1] // (self.stride + 1)
        if not self._ended:
            why = "file cut short"
        elif row < self.shape[0]:
            why = "image data cut short"
        else:
            why = "the compressed image data does not end"
        self._fail(row, why)

    def _crc_mismatch(self) -> NoReturn:
        """The IDAT chunk being read does not match its CRC: name the rows it holds."""
        totals, error = self._replay(self._chunk + 1)
        start = totals[-2] if len(totals) > 1 else 0
        row = start // (self.stride + 1)
        last = (totals[-1] - 1) // (self.stride + 1) if totals[-1] > start else row
        if row >= self.shape[0]:
            self._fail(row, "IDAT chunk CRC mismatch")
        if error is not None:
            stop = totals[-1] // (self.stride + 1)
            self._fail(row, f"IDAT chunk CRC mismatch: its data stops inflating at row {stop}")
        self._fail(row, f"IDAT chunk CRC mismatch: the chunk holds {self._span(row, last)}")

    def _corrupt(self, exc: Exception, row: int) -> NoReturn:
        """Inflate failed (``row``: about where, from the block being inflated)."""
        if self._left:  # the rest of the chunk: a CRC mismatch says the file is damaged
            self._fh.seek(self._at)
            value, left = self._sum, self._left
            while left:
                data = self._fh.read(min(left, _PIECE))
                if not data:
                    break
                value, left = self._crc(data, value), left - len(data)
            stored = self._fh.read(4)
            if not left and len(stored) == 4 and int.from_bytes(stored, "big") != value:
                self._crc_mismatch()
        if _checksum_error(exc):  # every row is in doubt
            rows = self._span(0, self.shape[0] - 1)
            self._fail(0, f"Adler-32 checksum mismatch: the image data of {rows} is damaged")
        totals, error = self._replay(self._chunk + 1)
        if error is not None:  # (else zlib takes what ISA-L did not: the block's row)
            row = totals[-1] // (self.stride + 1)
        self._fail(row, f"corrupt data: {exc}")

    # -- decoding

    def _input(self) -> bytes | None:
        """The next piece of the zlib stream: the IDAT chunks' data in order, at most
        :data:`_PIECE` bytes at a time, each chunk's CRC checked with its last piece (before
        that piece is inflated); None when no chunk is left."""
        fh = self._fh
        while not self._left:
            if self._chunk + 1 >= len(self._idat):
                return None
            self._chunk += 1
            self._at, self._left = self._idat[self._chunk]
            self._sum = _IDAT_CRC
            if not self._left:
                self._check_crc()
        size = min(self._left, _PIECE)
        fh.seek(self._at)
        data = fh.read(size)
        if len(data) < size:
            self._cut()
        self._at += size
        self._left -= size
        self._sum = self._crc(data, self._sum)
        if not self._left:
            self._check_crc()
        return data

    def _check_crc(self) -> None:
        """Compare the CRC stored after the IDAT chunk just read with its bytes'."""
        self._fh.seek(self._at)
        stored = self._fh.read(4)
        if len(stored) < 4:
            self._cut()
        if int.from_bytes(stored, "big") != self._sum:
            self._crc_mismatch()

    def _decode_block(self, rows: int) -> None:
        row_bytes = self.stride + 1
        need = rows * row_bytes
        parts = [self._pending]
        have = len(self._pending)
        inflate = self._inflate
        try:
            while have < need:
                if inflate.eof:  # (every byte before the end was inflated: the row is exact)
                    self._fail(self._next + have // row_bytes, "image data cut short")
                data = inflate.unconsumed_tail or self._input()
                try:  # (no input left: ISA-L may still hold bytes inflated from what it took)
                    out = inflate.decompress(b"" if data is None else data, need - have)
                except Exception as exc:  # zlib.error, or ISA-L's IsalError
                    self._corrupt(exc, self._next + have // row_bytes)
                if data is None and not out and not inflate.eof:
                    self._ran_out()
                parts.append(out)
                have += len(out)
        except self._error:  # a row before the one named may have an invalid filter type
            self._filter_types(b"".join(parts), self._failed)
            raise
        raw = b"".join(parts)
        self._pending = raw[need:]
        # the previous row, already unfiltered, goes first with filter type 0 (None): the
        # unfilter then sees the true row above the block's first row
        block = b"\x00" + self._prior.tobytes() + raw[:need]
        out = bytearray((rows + 1) * self.stride)
        from . import native

        try:
            native.png_unfilter(block, out, rows + 1, self.stride, self.bpp)
        except ValueError as exc:
            self._filter_types(raw[:need], self.shape[0])
            self._fail(self._next, str(exc))
        if self._next + rows == self.shape[0]:
            self._finish()
        decoded = np.frombuffer(out, np.uint8)[self.stride :].reshape(rows, self.stride)
        self._prior = decoded[-1].copy()
        self._rows.append(self._samples(decoded))
        self._next += rows

    def _samples(self, decoded: NDArray[np.uint8]) -> NDArray[Any]:
        """Unfiltered rows (``(rows, stride)`` bytes) as ``(rows, width, bands)`` samples:
        values below 8 bits unpacked (first pixel in the high bits), palette indices and grey
        of 1-8 bits with a colour key looked up, alpha added for a colour key."""
        rows, width = decoded.shape[0], self.shape[1]
        depth = self.bit_depth
        if depth < 8:  # each byte's pixels, high bits first; the padding after the last dropped
            shifts = np.arange(8 - depth, -1, -depth, dtype=np.uint8)
            mask = np.uint8((1 << depth) - 1)
            values = ((decoded[:, :, np.newaxis] >> shifts) & mask).reshape(rows, -1)[:, :width]
        elif depth == 16:
            values = decoded.view(">u2").astype(np.uint16)
        else:
            values = decoded
        if self._lut is not None:  # one 32-bit word per table entry: a flat take, ~8x faster
            looked = self._lut_words.take(values)  # than indexing rows of the table
            return looked.view(np.uint8).reshape(rows, width, 4)[:, :, : self._lut.shape[1]]
        arr = values.reshape(rows, width, -1)
        if self._key is None:
            return arr
        # alpha: 0 where every sample equals the key (compared on raw values), else the top
        # value; a key beyond the sample type (an 8-bit image's key above 255) matches none
        top = np.iinfo(self.dtype).max
        if int(self._key.max()) <= top:
            match = np.all(arr == self._key.astype(self.dtype), axis=2)
            alpha = np.where(match, self.dtype.type(0), self.dtype.type(top))
        else:
            alpha = np.full((rows, width), top, self.dtype)
        return np.concatenate([arr, alpha[:, :, np.newaxis]], axis=2)

    def _filter_types(self, raw: bytes, before: int) -> None:
        """Name the first row of ``raw`` (rows inflated from :attr:`_next` on) whose filter
        type is not 0-4, if it comes before row ``before``."""
        types = np.frombuffer(raw, np.uint8)[:: self.stride + 1]
        bad = np.flatnonzero(types > 4)
        if bad.size and self._next + int(bad[0]) < before:
            self._fail(self._next + int(bad[0]), f"invalid PNG filter type {types[bad[0]]}")

    def _finish(self) -> None:
        """After the last row: inflate the rest of the zlib stream, so that its Adler-32 is
        checked and its end reached; no IDAT data may follow it.  Image data past the last
        row is inflated and dropped, a piece at a time (libpng ignores it too, with a
        warning), up to :data:`_SURPLUS` bytes."""
        inflate = self._inflate
        height = self.shape[0]
        surplus = len(self._pending)
        while not inflate.eof:
            data = inflate.unconsumed_tail or self._input()
            try:
                out = inflate.decompress(b"" if data is None else data, _PIECE)
            except Exception as exc:  # zlib.error, or ISA-L's IsalError
                self._corrupt(exc, height)
            surplus += len(out)
            if surplus > _SURPLUS:
                self._fail(height, f"over {_SURPLUS >> 20} MiB of image data past the last row")
            if data is None and not out and not inflate.eof:
                self._ran_out()
        if inflate.unused_data or self._input() is not None:
            self._fail(height, "data after the end of the compressed image data")

    def _ensure(self, stop: int) -> None:
        if self._broken is not None:  # every later request meets the same error
            raise self._broken
        block = max(1, (1 << 20) // (self.stride + 1))
        try:
            while self._next < stop:
                self._decode_block(min(block, self.shape[0] - self._next))
        except self._error as exc:
            self._broken = exc
            raise

    def __getitem__(self, rows: slice | NDArray[np.intp]) -> NDArray[Any]:
        height = self.shape[0]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(height)
            index = np.arange(start, stop, step)
        elif isinstance(rows, (int, np.integer)):  # one row, as numpy gives it
            return self[np.array([rows], np.intp)][0]
        else:
            index = row_index(rows, height)
        out = np.empty((index.size, *self.shape[1:]), self.dtype)
        if index.size == 0:
            return out
        with self._lock:
            # rows more than `retain` before this request are no longer wanted by anyone
            low = int(index.min()) - self._retain
            while len(self._rows) > 1 and self._first + self._rows[0].shape[0] <= low:
                self._first += self._rows.popleft().shape[0]
            self._ensure(int(index.max()) + 1)
            if int(index.min()) < self._first:
                raise RuntimeError(
                    f"row {int(index.min())} of {self.name} is no longer held (reader retains "
                    f"{self._retain} rows)"
                )
            at = self._first
            for block in self._rows:  # copy each requested row from the block holding it
                n = block.shape[0]
                pick = (index >= at) & (index < at + n)
                if pick.any():
                    where = np.flatnonzero(pick)
                    if where.size == where[-1] - where[0] + 1 and np.all(
                        np.diff(index[where]) == 1
                    ):
                        lo = int(index[where[0]]) - at
                        out[where[0] : where[-1] + 1] = block[lo : lo + where.size]
                    else:
                        out[where] = block[index[where] - at]
                at += n
        return out
