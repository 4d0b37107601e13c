"""JPEG written strip by strip: :class:`JpegWriter`, and the metadata segments convcli keeps.

A baseline JPEG may hold *restart markers*: every so many MCUs (the 8x8 or 16x16 pixel
blocks of a scan) the encoder pads the entropy-coded data to a byte, writes ``RSTn`` and
starts the DC predictions again from zero, exactly as at the start of a scan.  So a band
of whole MCU rows encoded as a JPEG of its own, with the same tables, is byte for byte the
segment that one encoder would write for that band between two restart markers.  The
writer encodes blocks of whole MCU rows apart, on the strip pool while the next strips are
filtered (libjpeg-turbo through imagecodecs, which releases the GIL), and joins their scans
with ``RST0..RST7`` under one header whose ``DRI`` says the interval.

Chroma subsampling and colour conversion in libjpeg work within one MCU row, and the
bottom edge is padded from the image's last row as before, so the quantized coefficients,
and hence the decoded pixels, are those of encoding the whole image at once (tested
against libjpeg-turbo, Pillow and OpenCV decoders); the file is 2 bytes per block larger.
An image of one block is written as the whole-image encoder writes it.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ._blocks import RowBlocks, abandon

if TYPE_CHECKING:  # (not imported at run time: the read-ahead starts decoding without them)
    from concurrent.futures import Future, ThreadPoolExecutor

    from numpy.typing import NDArray

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
_SOF0, _SOS, _DRI = 0xC0, 0xDA, 0xDD
#: libjpeg-turbo's largest width or height (JPEG_MAX_DIMENSION).
MAX_SIDE = 65500
#: The DRI segment's interval is 16 bits.
MAX_INTERVAL = 65535
#: Rows of samples encoded together: about this many bytes of them.
BLOCK_BYTES = 1 << 20
#: Pillow's largest ICC payload per APP2 marker (the segments are Pillow's, byte for byte).
_ICC_PART = 65519


def split_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """A JPEG's marker segments up to and including SOS (``(marker, bytes)``, SOI left
    out), and its entropy-coded data (without EOI)."""
    segments, start = _segments(data)
    return segments, data[start:-2]


def _segments(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """:func:`split_segments`'s segments, and where the coded data starts (no copy of it)."""
    if data[:2] != SOI or data[-2:] != EOI:
        raise ValueError("not a complete JPEG")
    pos, segments = 2, []
    while True:
        if data[pos] != 0xFF:
            raise ValueError(f"no marker at byte {pos}")
        marker = data[pos + 1]
        size = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        segments.append((marker, data[pos : pos + 2 + size]))
        pos += 2 + size
        if marker == _SOS:
            return segments, pos


def with_metadata(
    data: bytes,
    *,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    exif: bytes | None = None,
) -> bytes | None:
    """``data`` (a JPEG that starts SOI, JFIF APP0, as libjpeg writes it) with the segments
    Pillow's ``save(..., exif=..., icc_profile=..., dpi=...)`` writes: the density in APP0,
    EXIF in APP1, the profile in APP2 parts.  None if ``data`` has another layout or the
    EXIF is too long for a segment (Pillow refuses it, and says so)."""
    if data[:4] != b"\xff\xd8\xff\xe0":
        return None
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    app0 = bytearray(data[2:app0_end])
    if dpi:
        xdpi, ydpi = (round(v) for v in dpi)
        if xdpi > 0 and ydpi > 0:  # as Pillow's encoder: density in dots per inch
            app0[11:16] = struct.pack(">BHH", 1, min(xdpi, 65535), min(ydpi, 65535))
    extra = []
    if exif:
        if len(exif) > 65533:
            return None
        extra.append(b"\xff\xe1" + struct.pack(">H", 2 + len(exif)) + exif)
    if icc_profile:
        parts = [icc_profile[i : i + _ICC_PART] for i in range(0, len(icc_profile), _ICC_PART)]
        for i, part in enumerate(parts, 1):
            extra.append(
                b"\xff\xe2" + struct.pack(">H", 16 + len(part)) + b"ICC_PROFILE\x00"
                + bytes((i, len(parts))) + part
            )  # fmt: skip
    return SOI + bytes(app0) + b"".join(extra) + data[app0_end:]


def encode(samples: NDArray[np.uint8], quality: int) -> bytes:
    """Grey ``(H, W)``/``(H, W, 1)`` or RGB ``(H, W, 3)`` uint8 samples as a baseline JPEG
    (libjpeg-turbo's defaults: standard Huffman tables, 4:2:0 for colour)."""
    import imagecodecs

    arr = samples[:, :, 0] if samples.ndim == 3 and samples.shape[2] == 1 else samples
    return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(arr), level=quality))


def mcu_rows(bands: str) -> int:
    """The MCU's height in rows for grey (8) or colour, 4:2:0 (16)."""
    return 8 if bands == "L" else 16


def block_rows(width: int, bands: str) -> int:
    """Rows per encoded block: whole MCU rows, about :data:`BLOCK_BYTES` of samples, and
    few enough MCUs for the 16-bit restart interval."""
    mcu = mcu_rows(bands)
    per_row = -(-width // mcu)  # MCUs across (the MCU is as wide as it is tall)
    most = max(1, MAX_INTERVAL // per_row)
    wanted = max(1, BLOCK_BYTES // max(1, width * len(bands)) // mcu)
    return mcu * min(most, wanted)


class JpegWriter:
    """Write a baseline JPEG to a binary file strip by strip: :meth:`write` each strip of
    ``(rows, width, channels)`` uint8 samples (grey or RGB) in order, then :meth:`close`.

    Rows are encoded in blocks of :attr:`block_rows` whatever the strips they come in, so
    the file's bytes depend on the image alone; on ``pool`` with ``workers`` > 1."""

    def __init__(
        self,
        fh: BinaryIO,
        width: int,
        height: int,
        bands: str,
        *,
        quality: int,
        icc_profile: bytes | None = None,
        dpi: tuple[float, float] | None = None,
        exif: bytes | None = None,
        pool: ThreadPoolExecutor | None = None,
        workers: int = 1,
        rows: int | None = None,
    ) -> None:
        if bands not in ("L", "RGB"):
            raise ValueError(f"JPEG bands must be L or RGB, got {bands!r}")
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ValueError(f"a JPEG is at most {MAX_SIDE} pixels a side, not {width}x{height}")
        if exif and len(exif) > 65533:
            raise ValueError(f"EXIF of {len(exif)} bytes does not fit a JPEG segment")
        self.fh, self.width, self.height, self.bands = fh, width, height, bands
        self.channels = len(bands)
        self.quality = quality
        self.metadata = {"icc_profile": icc_profile, "dpi": dpi, "exif": exif}
        self.mcu = mcu_rows(bands)
        self.block_rows = rows or block_rows(width, bands)
        if self.block_rows % self.mcu:
            raise ValueError(f"block rows must be whole MCU rows ({self.mcu}), not {rows}")
        self.blocks = -(-height // self.block_rows)
        self.pool = pool if workers > 1 else None
        self.ahead = max(1, 2 * workers)
        self.pending: deque[Future | bytes] = deque()
        self.rows_in = RowBlocks(height, self.block_rows, "JPEG")
        self.emitted = 0  # blocks written
        self.tables: list[tuple[int, bytes]] = []

    def write(self, strip: NDArray[Any]) -> None:
        """Add the next rows (``(rows, width, channels)`` uint8)."""
        if strip.ndim == 2:
            strip = strip[:, :, np.newaxis]
        if strip.shape[1:] != (self.width, self.channels) or strip.dtype != np.uint8:
            raise ValueError(
                f"strip of shape {strip.shape} and type {strip.dtype} does not fit a "
                f"{self.width}-wide {self.bands} uint8 JPEG"
            )
        for block in self.rows_in.add(strip):
            self._block(block)

    def _block(self, block: NDArray[np.uint8]) -> None:
        if self.pool is not None:
            self.pending.append(self.pool.submit(encode, block, self.quality))
        else:
            self.pending.append(encode(block, self.quality))
        while len(self.pending) > self.ahead or (
            self.pending and isinstance(self.pending[0], bytes)
        ):
            self._emit(self.pending.popleft())

    def _emit(self, item: Future | bytes) -> None:
        data = item if isinstance(item, bytes) else item.result()
        if self.blocks == 1:  # the whole image in one: as the whole-image encoder writes it
            self.fh.write(self._with_metadata(data))
            self.emitted = 1
            return
        segments, start = _segments(data)
        tables = [(m, s) for m, s in segments if m != _SOF0]
        if self.emitted == 0:
            self.tables = tables
            self.fh.write(self._header(segments))
        elif tables != self.tables:  # libjpeg's standard tables never change: a bug if so
            raise ValueError(f"JPEG block {self.emitted} was encoded with other tables")
        else:
            self.fh.write(bytes((0xFF, 0xD0 + (self.emitted - 1) % 8)))
        self.fh.write(memoryview(data)[start:-2])
        self.emitted += 1

    def _header(self, segments: list[tuple[int, bytes]]) -> bytes:
        out = []
        for marker, seg in segments:
            if marker == _SOF0:
                h_max = max(seg[11 + 3 * i] >> 4 for i in range(seg[9]))
                v_max = max(seg[11 + 3 * i] & 15 for i in range(seg[9]))
                if 8 * v_max != self.mcu:
                    raise ValueError(f"JPEG MCU is {8 * v_max} rows, not {self.mcu}")
                across = -(-self.width // (8 * h_max))
                interval = across * (self.block_rows // self.mcu)
                seg = seg[:5] + struct.pack(">H", self.height) + seg[7:]
            if marker == _SOS:
                out.append(b"\xff\xdd\x00\x04" + struct.pack(">H", interval))
            out.append(seg)
        header = SOI + b"".join(out) + EOI
        return self._with_metadata(header)[:-2]

    def _with_metadata(self, data: bytes) -> bytes:
        out = with_metadata(data, **self.metadata)  # type: ignore[arg-type]
        if out is None:  # libjpeg writes JFIF for grey and YCbCr: a bug if not
            raise ValueError("the JPEG encoder wrote no JFIF header to put metadata after")
        return out

    def close(self) -> None:
        """Write what is left and the end of the file; every row must have been written."""
        self.rows_in.check_complete()
        while self.pending:
            self._emit(self.pending.popleft())
        if self.blocks > 1:
            self.fh.write(EOI)

    def abort(self) -> None:
        """Wait for the blocks still being encoded (after a failure), writing nothing."""
        abandon(self.pending)
        self.pending.clear()


# -- reading ahead -----------------------------------------------------------------------------

#: Pillow's decompression-bomb limit as shipped (``PIL.Image.MAX_IMAGE_PIXELS``).
_PILLOW_DEFAULT_LIMIT = 89_478_485
#: Start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def frame_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's first frame header (as libjpeg takes it), or None
    when the markers before it do not parse."""
    if data[:2] != SOI:
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            pos += 2
            continue
        if marker in (0xD8, 0xD9, _SOS):  # a second SOI, EOI or the scan before any frame
            return None
        size = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _SOF_MARKERS:
            if size < 8 or pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + size
    return None


def coded_data_too_short(data: bytes) -> str | None:
    """Why a baseline JPEG's coded data cannot hold its image, or None.

    Every 8x8 block of a sequential Huffman-coded scan takes at least two bits (a DC code
    and an end of block, whatever the tables), so a scan of fewer bytes than a quarter of
    its blocks was cut short (libjpeg and Pillow fill the rest in grey and say nothing).
    Only single-scan baseline and extended sequential frames are judged; anything else
    (progressive, arithmetic, several scans, bytes after the end marker) gives None."""
    try:
        segments, start = _segments(data)
    except (ValueError, IndexError, struct.error):
        return None
    coded = len(data) - start - 2
    frames = [s for m, s in segments if m in _SOF_MARKERS]
    sos = [s for m, s in segments if m == _SOS]
    if len(frames) != 1 or frames[0][1] not in (0xC0, 0xC1) or len(sos) != 1:
        return None
    sof = frames[0]
    if len(sof) < 10:
        return None
    height, width = struct.unpack(">HH", sof[5:9])
    count = sof[9]
    if len(sof) < 10 + 3 * count or not count or len(sos[0]) < 5 or sos[0][4] != count:
        return None
    factors = [(sof[11 + 3 * i] >> 4, sof[11 + 3 * i] & 15) for i in range(count)]
    if count == 1:  # one component: blocks of the component itself, not of MCUs
        blocks = -(-width // 8) * -(-height // 8)
    else:
        h_max, v_max = max(f[0] for f in factors), max(f[1] for f in factors)
        if not h_max or not v_max:
            return None
        mcus = -(-width // (8 * h_max)) * -(-height // (8 * v_max))
        blocks = mcus * sum(h * v for h, v in factors)
    if 8 * coded >= 2 * blocks:
        return None
    return (
        f"the JPEG's coded data ends early: {coded:,} bytes for {blocks:,} blocks of "
        f"{width}x{height} pixels, which take at least {-(-blocks // 4):,}"
    )


class Prefetched:
    """A JPEG file's bytes, and its grey or RGB samples being decoded on a thread of their
    own (libjpeg-turbo releases the GIL): see :func:`prefetch`."""

    def __init__(self, name: str, data: bytes) -> None:
        import threading

        import imagecodecs

        self.name, self.data = name, data
        self._pixels: NDArray[np.uint8] | None = None
        self._failed = False
        self._thread = threading.Thread(
            target=self._decode, args=(imagecodecs.jpeg8_decode,), name="convcli_jpeg",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _decode(self, decode: Any) -> None:
        try:
            self._pixels = decode(self.data)
        except Exception:  # a damaged file: the reader decodes it again and says why
            self._failed = True

    def pixels(self) -> NDArray[np.uint8] | None:
        """The decoded samples (waiting for them), or None if libjpeg-turbo refused."""
        self._thread.join()
        return None if self._failed else self._pixels


#: The prefetch :func:`start_early` began, until :func:`take_early` takes it (or drops it).
_early: Prefetched | None = None


def start_early(path: str) -> None:
    """:func:`prefetch` ``path`` (under the default pixel limit) and keep it for
    :func:`take_early`: for a command line that names its input before the command's
    options are parsed (``python -m convcli``: :func:`convcli.__main__.early_input`)."""
    global _early
    _early = prefetch(path)


def take_early(path: str | None, max_pixels: int | None = None) -> Prefetched | None:
    """The prefetch :func:`start_early` began, if it was of ``path`` under the same pixel
    limit (``max_pixels`` None: the default); it is forgotten either way, so that its
    samples are not kept by a command that does not use them."""
    global _early
    early, _early = _early, None
    if early is not None and path is not None and path == early.name and max_pixels is None:
        return early
    return None


def prefetch(path: str, max_pixels: int | None = None) -> Prefetched | None:
    """Start decoding the JPEG file ``path`` now, so that the decoding overlaps whatever the
    caller does next (a command's remaining imports: Pillow, the engine); pass the result to
    :func:`convcli.image_io.read_samples` (``prefetched=``), which uses it for that file
    and still checks everything it checks (the format, the pixel limit, the metadata).

    Nothing starts (None) unless the file is a JPEG, complete (it ends with EOI) and within
    ``max_pixels`` by its frame header (None: Pillow's limit; 0: none): the pixel limit
    refuses before decoding.  Needs numpy and imagecodecs, not Pillow."""
    import os
    import sys

    try:
        if not os.path.isfile(path):  # (a pipe or device is never opened here: it reads once)
            return None
        with open(path, "rb") as fh:
            if fh.read(3) != b"\xff\xd8\xff":
                return None
            data = b"\xff\xd8\xff" + fh.read()
    except OSError:
        return None  # the reader says what is wrong
    size = frame_size(data)
    if size is None or not data.rstrip(b"\x00\r\n ").endswith(EOI):
        return None
    if coded_data_too_short(data):
        return None  # the reader refuses it
    if max_pixels is None:  # as image_io.default_max_pixels, without importing Pillow
        pil = sys.modules.get("PIL.Image")
        limit = pil.MAX_IMAGE_PIXELS if pil is not None else _PILLOW_DEFAULT_LIMIT
        max_pixels = 0 if limit is None else int(limit)
    if max_pixels and max(1, size[0]) * max(1, size[1]) > max_pixels:
        return None
    try:
        return Prefetched(path, data)
    except ImportError:  # pragma: no cover - imagecodecs is a dependency
        return None
