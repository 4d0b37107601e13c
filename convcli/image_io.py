"""Reading and writing images: the only module that reads or writes image files (Pillow).

Every image becomes an :class:`Image`: float32 pixels ``(H, W, C)``, integer
sources scaled to [0, 1] (8-bit by 1/255, 16-bit by 1/65535), float sources
unscaled, and the bands ``L``, ``LA``, ``RGB`` or ``RGBA``.

Modes on read (the documented rule):

=========================== ============================== =========
Pillow mode                 becomes                        depth
=========================== ============================== =========
``1``                       L (0 -> 0.0, 1 -> 1.0)         8
``L``                       L                              8
``LA``, ``La``              LA (``La`` un-premultiplied)   8
``P``, ``PA``               RGBA if it has transparency,   8
                            else RGB
``RGB``, ``RGBX``           RGB                            8
``RGBA``, ``RGBa``          RGBA (``RGBa`` un-premult.)    8
``CMYK``, ``YCbCr``,        RGB, converted by Pillow       8
``LAB``, ``HSV``            (the CMYK ICC profile is not
                            written to the RGB output)
``I;16``, ``I;16B/L/N``     L                              16
``I`` (32-bit integer)      L; 16-bit if all values lie    16 or
                            in 0..65535, else float        float
``F`` (32-bit float)        L, values unscaled             float
16-bit RGB/RGBA/LA PNG      RGB/RGBA/LA (decoded by        16
(interlaced or not)         convcli: Pillow would drop to
                            8 bits)
=========================== ============================== =========

A PNG ``tRNS`` colour key on a grey or RGB image (8- or 16-bit) becomes an alpha
band (``LA``/``RGBA``, alpha 0 where the pixel equals the key), as for palette
images.  TIFFs of 8/16-bit or float32 L, LA, RGB or RGBA samples are read by strips
or tiles at full depth (:mod:`convcli.tiff_codec`), non-interlaced 8/16-bit PNGs by rows
(:mod:`convcli.png_codec`), grey and RGB JPEGs by imagecodecs (Pillow's samples); the
rest by Pillow, as the table says.  An image above the pixel limit
(:func:`default_max_pixels`, or ``max_pixels``) is refused before it is decoded.

Writing: the format comes from the extension (``format=`` overrides, and is
required for stdout); 8-bit output for every band layout the format can
hold; 16-bit output as PNG (:mod:`convcli.png_codec`) or TIFF
(:mod:`convcli.tiff_codec`); float output as TIFF, every band layout.  JPEG by
imagecodecs with Pillow's metadata segments, WebP and BMP by Pillow.  Values are
rounded to nearest, not truncated, and clipped.
JPEG cannot store alpha, 16-bit or float: such requests fail with a message
naming the file rather than silently dropping data.  EXIF orientation is
applied on read; only descriptive EXIF tags (camera, date, author, copyright,
description, the Exif and GPS sub-IFDs) are written back, with Orientation 1,
never tags describing the source file's layout (size, samples, compression,
strips, sample format, photometric...); the ICC profile and DPI are written back.
Writes to a path are atomic (temporary file in the same folder, then rename): a
failed write leaves no partial file and an existing file untouched.
:func:`check_output` raises what :func:`write_image` would, without encoding.
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, ImageFile, UnidentifiedImageError
from PIL import Image as PILImage

from . import jpeg_codec, native, png_codec
from ._fdcapture import captured_stderr
from .atomic import parent_folder, write_atomically
from .errors import ConvcliError, ImageReadError, ImageWriteError, PathError, UsageError

Depth = Literal["8", "16", "float"]

#: Output formats by extension (Pillow's names).
EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
FORMAT_NAMES: dict[str, str] = {
    "png": "PNG",
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "tiff": "TIFF",
    "tif": "TIFF",
    "webp": "WEBP",
    "bmp": "BMP",
}
#: PNG compression level used when none is given (see :mod:`convcli.png_codec`).
DEFAULT_PNG_LEVEL = png_codec.DEFAULT_LEVEL
DEFAULT_JPEG_QUALITY = 92

_EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}
_ICC_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}

#: EXIF tags of the first IFD written back: descriptive ones only.  For a TIFF source the
#: first IFD is the image's own directory (size, bits per sample, compression, strips,
#: sample format, photometric...), which would mislabel the output's pixels.
_KEPT_EXIF_TAGS = (
    ExifTags.Base.ImageDescription,
    ExifTags.Base.Make,
    ExifTags.Base.Model,
    ExifTags.Base.Software,
    ExifTags.Base.DateTime,
    ExifTags.Base.Artist,
    ExifTags.Base.Copyright,
)
#: Dropped from the Exif sub-IFD: the image size (stale once the orientation is applied)
#: and the Interop pointer (an offset into the source file).
_DROPPED_EXIF_IFD_TAGS = (
    ExifTags.Base.ExifImageWidth,
    ExifTags.Base.ExifImageHeight,
    ExifTags.IFD.Interop,
)


@dataclass
class ImageMeta:
    """What the source carried besides pixels, to write back."""

    format: str | None = None
    source_mode: str | None = None
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)


class _Dims:
    """Height, width, channels and alpha of an ``(H, W, C)`` array of values."""

    bands: str

    @property
    def _values(self) -> Any:  # pragma: no cover - each subclass names its array
        raise NotImplementedError

    @property
    def height(self) -> int:
        return int(self._values.shape[0])

    @property
    def width(self) -> int:
        return int(self._values.shape[1])

    @property
    def channels(self) -> int:
        return int(self._values.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.bands in ("LA", "RGBA")


@dataclass
class Image(_Dims):
    """Pixels as float32 ``(H, W, C)`` plus what is needed to write them back."""

    pixels: NDArray[np.float32]
    bands: str
    depth: Depth
    meta: ImageMeta = field(default_factory=ImageMeta)

    @property
    def _values(self) -> Any:
        return self.pixels


@dataclass
class Samples(_Dims):
    """An image as stored: ``(H, W, C)`` samples of its own type (uint8 for 8-bit, uint16 for
    16-bit, float32 for float), with the same bands, depth and metadata as :class:`Image`.

    What the streaming pipeline reads: a quarter of the float32 image's size for 8-bit data.
    :func:`unit_float` turns any slice of it into the values :func:`read_image` gives.
    """

    samples: NDArray[Any]
    bands: str
    depth: Depth
    meta: ImageMeta = field(default_factory=ImageMeta)

    @property
    def _values(self) -> Any:
        return self.samples

    def close(self) -> None:
        """Close the file a lazy reader of rows holds open (no-op for an array)."""
        close = getattr(self.samples, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Samples:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The sample type of each depth.
SAMPLE_TYPES: dict[str, type] = {"8": np.uint8, "16": np.uint16, "float": np.float32}


def unit_float(samples: NDArray[Any], depth: str, out: NDArray[Any] | None = None) -> NDArray[Any]:
    """Stored samples as float32 on the [0, 1] scale: ``k / 255``, ``k / 65535`` (correctly
    rounded), float samples as they are.  ``out``: a float32 array to fill."""
    if depth == "float":
        if out is None:
            return np.asarray(samples, dtype=np.float32)
        np.copyto(out, samples, casting="same_kind")
        return out
    top = np.float32(255) if depth == "8" else np.float32(65535)
    return np.divide(samples, top, out=out, dtype=np.float32)


_BANDS_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def from_array(
    pixels: NDArray[np.floating] | NDArray[np.integer], *, depth: Depth = "float",
    bands: str | None = None,
) -> Image:  # fmt: skip
    """Wrap an array as an :class:`Image`: 2-D is ``L``; 3-D by its channel count.

    Values are taken as they are (already scaled to [0, 1] for 8/16-bit depth).
    """
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if arr.ndim != 3 or arr.shape[2] not in _BANDS_BY_CHANNELS:
        raise UsageError(f"an image array must be (H, W) or (H, W, 1..4), got {arr.shape}")
    layout = bands or _BANDS_BY_CHANNELS[arr.shape[2]]
    if len(layout) != arr.shape[2]:
        raise UsageError(f"bands '{layout}' do not match {arr.shape[2]} channels")
    return Image(np.ascontiguousarray(arr), layout, depth)


# -- reading ---------------------------------------------------------------------------------


def read_image(
    source: str | os.PathLike[str] | BinaryIO, *, max_pixels: int | None = None, lazy: bool = True
) -> Image:
    """Read an image file (``"-"``: standard input) into an :class:`Image`.

    Raises :class:`ImageReadError` naming the file for anything Pillow cannot read, and
    for an image of more than ``max_pixels`` pixels (see :func:`read_samples`).
    """
    stored = read_samples(source, max_pixels=max_pixels, lazy=lazy)  # TIFF, PNG by rows
    samples = stored.samples
    if not isinstance(samples, np.ndarray):  # a TIFF's strip reader: decode every row
        reader = samples
        try:
            samples = reader[0 : stored.height]
        finally:
            reader.close()
    pixels = unit_float(samples, stored.depth)
    return Image(np.ascontiguousarray(pixels), stored.bands, stored.depth, stored.meta)


def read_samples(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    max_pixels: int | None = None,
    lazy: bool = True,
    prefetched: jpeg_codec.Prefetched | None = None,
) -> Samples:
    """Read an image file into its stored samples (:class:`Samples`), no float copy.

    ``max_pixels``: refuse (:class:`ImageReadError`, before decoding) an image of more
    pixels; None means :func:`default_max_pixels`, 0 means no limit.  A TIFF file of
    8/16-bit or float32 L, LA, RGB or RGBA samples (strips or tiles, contiguous or planar,
    any compression tifffile decodes), or a non-interlaced PNG (any colour type and bit
    depth: palette and 1/2/4-bit grey expanded to 8 bits, a colour key made alpha), is not
    decoded here: its samples are a lazy reader of rows
    (:class:`convcli.tiff_codec.TiffRows`, :class:`convcli.png_codec.PngRows`) that
    decodes the rows asked for and holds the file open until :meth:`Samples.close` (or
    ``with``).  ``lazy=False``: decode every file whole into an array (those readers too,
    read whole: the same samples either way).  ``prefetched``:
    :func:`convcli.jpeg_codec.prefetch` of ``source``, whose bytes and decoded samples are
    then used (every check is made as without it).
    """
    limit = default_max_pixels() if max_pixels is None else max_pixels
    # libtiff (inside Pillow) writes its warnings and errors straight to fd 2: they are
    # caught, dropped when the file is refused (the error says why), notes otherwise
    chatter: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught, captured_stderr() as chatter:
            warnings.simplefilter("always")  # Pillow's warnings become notes, shown once
            image = _open_lazy(source, limit or None)
            if image is not None and not lazy:  # the same samples, read whole
                image = _read_whole(image)
            if image is None:
                ahead = prefetched
                if (
                    ahead is not None
                    and isinstance(source, (str, os.PathLike))
                    and (os.fspath(source) == ahead.name)
                ):
                    name, data = ahead.name, ahead.data
                else:
                    (name, data), ahead = _read_source(source), None
                image = _decode(data, name, limit or None, ahead)
    except ImageReadError as exc:
        vague = re.search(r"\(decoder error -?\d+\)$", str(exc))
        if vague and chatter:  # Pillow's code number says less than libtiff's own words
            raise ImageReadError(
                f"{str(exc)[: vague.start()]}({chatter[-1][:200].rstrip('.')})"
            ) from None
        raise
    for message in dict.fromkeys(str(w.message).strip() for w in caught):
        image.meta.notes.append(message)
    chatter = [line for line in chatter if not any(b in line for b in _BENIGN_CHATTER)]
    if chatter:
        more = f" (and {len(chatter) - 1} more)" if len(chatter) > 1 else ""
        image.meta.notes.append(f"the decoder warned: {chatter[0][:200]}{more}")
    if isinstance(source, (str, os.PathLike)):
        note = _format_note(os.fspath(source), image.meta.format)
        if note:
            image.meta.notes.insert(0, note)
    return image


#: Decoder messages that say nothing about the file: libpng's complaint that imagecodecs
#: reads an interlaced PNG without its interlace handling (the pixels are right: tested
#: against Pillow and the hand-written Adam7 reader for every 16-bit colour type).
_BENIGN_CHATTER = ("Interlace handling should be turned on when using png_read_image",)


def _read_whole(image: Samples) -> Samples:
    """A lazy reader's samples read into one array (``read_samples(lazy=False)``), so that a
    whole read gives what the rows give: the same layouts, depth and checks."""
    rows = image.samples
    try:
        pixels = np.ascontiguousarray(rows[0 : image.height])
    finally:
        rows.close()
    return Samples(pixels, image.bands, image.depth, image.meta)


def _open_lazy(source: str | os.PathLike[str] | BinaryIO, limit: int | None) -> Samples | None:
    """A TIFF's or PNG's samples as a lazy reader of rows, or None to decode the file whole."""
    from . import tiff_codec

    if not isinstance(source, (str, os.PathLike)) or os.fspath(source) == "-":
        return None
    name = os.fspath(source)
    if not os.path.isfile(name):  # a pipe or device (<(...), /dev/stdin) reads once: whole
        return None
    try:
        with open(name, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None  # _read_source says what is wrong
    if tiff_codec.is_tiff(head):
        return _open_tiff(name, limit)
    if head == _PNG_SIG and native.AVAILABLE:  # (no C unfilter: decoded whole, by a library)
        return _open_png(name, limit)
    return None


def _open_png(name: str, limit: int | None) -> Samples | None:
    """A PNG path's samples as a row reader (:class:`convcli.png_codec.PngRows`), or None to
    decode it whole (interlaced, turned by its EXIF orientation, damaged...)."""
    try:  # the pixel limit first: the row reader allocates a row from the header's width
        with open(name, "rb") as fh:
            header = _png_header(fh.read(33))
    except OSError:
        return None
    if header is not None:
        check_pixel_limit(header.width, header.height, name, limit)
    try:
        rows = png_codec.PngRows(name, name)  # reads the chunk headers, no image data
    except (png_codec.Unsupported, OSError):
        return None
    previous = PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    PILImage.MAX_IMAGE_PIXELS = None
    # ancillary chunks that failed their CRC (the row reader warned and ignores them, as
    # libpng does): Pillow refuses such a file unless told to skip their CRCs
    ImageFile.LOAD_TRUNCATED_IMAGES = bool(rows.damaged)
    try:
        with PILImage.open(name) as im:  # the chunks before the image data only
            check_pixel_limit(im.width, im.height, name, limit)
            if im.info.get("interlace"):
                rows.close()
                return None
            meta, exif = _pil_meta(im, rows.exif)
            mode = im.mode
    except ConvcliError:
        rows.close()
        raise
    except Exception:
        rows.close()
        return None  # Pillow's decoder says what is wrong with the file
    finally:
        PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = previous
    if "iCCP" in rows.damaged:  # (Pillow read the damaged chunks' content all the same)
        meta.icc_profile = None
    if "pHYs" in rows.damaged:
        meta.dpi = None
    if exif.get(ExifTags.Base.Orientation, 1) not in (None, 1):
        rows.close()
        return None
    depth = "8" if rows.dtype == np.uint8 else "16"
    # a palette, 1-4 bits or a colour key (8-bit, or 16-bit grey) is named as the whole-image
    # path names it, by Pillow's mode ("P", "1", "L", "I;16", "RGB"); the others as before
    by_pillow = rows.bit_depth < 16 or rows.colour == 0
    plain = rows.colour != 3 and rows.bit_depth >= 8 and rows.bands == rows.file_bands
    meta.source_mode = mode if by_pillow and not plain else f"{rows.file_bands};{depth}"
    return Samples(rows, rows.bands, depth, meta)  # type: ignore[arg-type]


def _open_tiff(name: str, limit: int | None) -> Samples | None:
    """A TIFF path's samples as a lazy strip reader, or None to decode the file whole (a
    TIFF the strip reader does not take: palette, CMYK, 1-bit, associated alpha...).  A
    TIFF whose Orientation tag turns it is read by the strip reader too, whole, and turned
    upright here (Pillow would reduce 16-bit colour to 8 bits)."""
    from . import tiff_codec

    previous = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = None
    meta: ImageMeta | None = None
    try:
        with PILImage.open(name) as im:  # the header and tags only: no pixels decoded
            check_pixel_limit(im.width, im.height, name, limit)
            meta, _ = _pil_meta(im)
    except UnidentifiedImageError:
        pass  # a layout Pillow does not know (16-bit grey with alpha, float RGB): tifffile may
    except ConvcliError:
        raise
    except Exception:
        return None  # a damaged file: Pillow's decoder says what is wrong with it
    finally:
        PILImage.MAX_IMAGE_PIXELS = previous
    try:
        rows = tiff_codec.TiffRows(name, name)
    except tiff_codec.Unsupported:
        return None
    try:
        check_pixel_limit(rows.shape[1], rows.shape[0], name, limit)
    except ConvcliError:
        rows.close()
        raise
    if meta is None:  # Pillow could not open it: the same metadata from tifffile's tags
        meta = _tiff_meta(rows)
    meta.notes.extend(rows.notes)
    depth = {np.dtype(np.uint8): "8", np.dtype(np.uint16): "16", np.dtype(np.float32): "float"}
    bands = _BANDS_BY_CHANNELS[rows.shape[2]]
    meta.source_mode = f"{bands};{rows.dtype}"
    turn = _UPRIGHT.get(rows.orientation)
    if turn is not None:  # turned upright: read whole, as every rotated input is
        try:
            pixels = np.ascontiguousarray(turn(rows[0 : rows.shape[0]]))
        finally:
            rows.close()
        return Samples(pixels, bands, depth[pixels.dtype], meta)  # type: ignore[arg-type]
    return Samples(rows, bands, depth[rows.dtype], meta)  # type: ignore[arg-type]


def _tiff_meta(rows: Any) -> ImageMeta:
    """The metadata kept from a TIFF that Pillow cannot open (float colour, 16-bit grey with
    alpha), from the tags tifffile read: ICC profile, DPI, descriptive tags, orientation."""
    meta = ImageMeta(format="TIFF", icc_profile=rows.icc_profile, dpi=rows.dpi)
    exif = PILImage.Exif()
    for code, value in rows.text_tags.items():
        if code in _KEPT_EXIF_TAGS:
            exif[code] = value
    if rows.orientation != 1:
        exif[ExifTags.Base.Orientation] = rows.orientation
    meta.exif = _descriptive_exif(exif)
    return meta


def default_max_pixels() -> int:
    """The pixel limit when none is given: Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485 unless changed; 0 if it is None)."""
    limit = PILImage.MAX_IMAGE_PIXELS
    return 0 if limit is None else int(limit)


def check_pixel_limit(width: int, height: int, name: str, limit: int | None) -> None:
    """Refuse an image above ``limit`` pixels (None or 0: no limit), before any decoding."""
    pixels = max(1, width) * max(1, height)
    if limit and pixels > limit:
        raise ImageReadError(
            f"{name}: image too large ({width}x{height} = {pixels:,} pixels, above the limit "
            f"of {limit:,}; --max-pixels raises it, 0 for none)"
        )


def _decode(
    data: bytes, name: str, limit: int | None, ahead: jpeg_codec.Prefetched | None = None
) -> Samples:
    png = _png_header(data)
    if png is not None and png.bit_depth == 16 and png.colour in (2, 4, 6):
        return _read_png16_colour(data, png, name, limit)
    previous = ImageFile.LOAD_TRUNCATED_IMAGES, PILImage.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    PILImage.MAX_IMAGE_PIXELS = None  # convcli's own limit, checked below, is the refusal
    try:
        # only the allowed formats' plugins look at the bytes: no other decoder ever runs
        with _open_pil(data) as im:
            check_pixel_limit(im.width, im.height, name, limit)
            if im.format == "JPEG" and im.mode in ("L", "RGB"):
                short = jpeg_codec.coded_data_too_short(data)
                if short:
                    raise ImageReadError(f"{name}: cannot decode image ({short})")
                fast = _jpeg_samples(data, im, ahead)
                if fast is not None:
                    return fast
            im.load()
            return _from_pil(im, name, png_bit_depth=png.bit_depth if png else None)
    except UnidentifiedImageError:
        if data.startswith(_PNG_SIG):
            raise ImageReadError(
                f"{name}: cannot decode PNG (a damaged chunk: a CRC mismatch, a malformed "
                "header, or the file cut short)"
            ) from None
        from . import tiff_codec

        if tiff_codec.is_tiff(data[:8]):
            layout = tiff_codec.describe(data)
            if layout is not None:  # a valid TIFF of a layout neither reader takes
                raise ImageReadError(
                    f"{name}: cannot decode TIFF (a layout convcli does not read: {layout}; "
                    "it reads 8/16-bit and float32 grey and colour)"
                ) from None
            # a TIFF whose directory (often at the end of the file) cannot be read
            raise ImageReadError(
                f"{name}: cannot decode TIFF (its image directory cannot be read: the file "
                f"is damaged or cut short, {len(data):,} bytes)"
            ) from None
        kind = next((k for magic, k in _OTHER_FORMATS if data.startswith(magic)), None)
        if kind is None and data[:1] == b"\x0a" and data[1:2] in b"\x00\x02\x03\x04\x05":
            kind = "PCX" if data[2:3] == b"\x01" else None
        what = (
            f"its content is {kind}, which convcli does not read" if kind else ("not an image file")
        )
        raise ImageReadError(
            f"{name}: {what} (it reads PNG, JPEG, TIFF, WebP, BMP and GIF)"
        ) from None
    except (ConvcliError, MemoryError):
        raise
    except Exception as exc:  # a decoder fed a damaged file can raise anything (TypeError...)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            declared = 8 + struct.unpack("<I", data[4:8])[0]
            if len(data) < declared:  # libwebp only says it "could not create decoder object"
                raise ImageReadError(
                    f"{name}: cannot decode image (truncated WebP: {len(data):,} of "
                    f"{declared:,} bytes)"
                ) from None
        raise ImageReadError(f"{name}: cannot decode image ({_reason(exc)})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, PILImage.MAX_IMAGE_PIXELS = previous


#: The only formats read, decided from the file's content (Pillow's names).
READ_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF")


def _open_pil(data: bytes) -> PILImage.Image:
    """Pillow's image of ``data``, opened (not decoded) as ``PIL.Image.open(...,
    formats=READ_FORMATS)`` opens it.  A JPEG goes straight to the reader that
    ``Image.open`` would pick for it (``JpegImagePlugin.jpeg_factory``, which also
    recognises MPO), so that opening it does not first load Pillow's BMP, GIF, PPM and PNG
    plugins; whatever that reader refuses goes the ordinary way."""
    if data.startswith(b"\xff\xd8\xff"):
        from PIL import JpegImagePlugin

        try:
            return JpegImagePlugin.jpeg_factory(io.BytesIO(data))
        except Exception:
            pass  # Image.open tries it again, with every allowed format, and says why
    return PILImage.open(io.BytesIO(data), formats=READ_FORMATS)


#: Formats by extension, to warn when the content is another of the allowed ones.
_FORMAT_BY_EXTENSION = {**EXTENSIONS, ".gif": "GIF"}
#: Magic numbers of formats refused, to name them in the error.
_OTHER_FORMATS = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"SIMPLE  =", "FITS"),
    (b"DDS ", "DDS"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x01\xda", "SGI"),
)


def _suffix(name: str) -> str:
    """The file name's extension in lower case, as ``pathlib``'s ``Path(name).suffix``."""
    parts = [part for part in name.split(os.sep) if part not in ("", ".")]
    base = parts[-1] if parts else ""
    dot = base.rfind(".")
    return base[dot:].lower() if 0 < dot < len(base) - 1 else ""


def _format_note(name: str, fmt: str | None) -> str | None:
    """A note when the content's format is not the one the file's extension names."""
    expected = _FORMAT_BY_EXTENSION.get(_suffix(name))
    if expected is None or fmt is None or fmt == expected:
        return None
    return f"the content is {fmt}, not the {expected} its name says; read as {fmt}"


#: EXIF orientation -> the numpy view that turns the stored pixels upright, as
#: ``PIL.ImageOps.exif_transpose`` does (Pillow's ROTATE_90 is anticlockwise, as np.rot90).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 3),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _jpeg_samples(
    data: bytes, im: PILImage.Image, ahead: jpeg_codec.Prefetched | None = None
) -> Samples | None:
    """A grey or RGB JPEG decoded by imagecodecs (libjpeg-turbo straight into a numpy array:
    the same samples as Pillow's, about three times faster for a 12-MP photo), with
    Pillow's metadata and EXIF orientation; None to let Pillow decode it.  ``ahead``: the
    same bytes, being decoded already."""
    try:
        import imagecodecs
    except ImportError:  # pragma: no cover - imagecodecs is a dependency
        return None
    if not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return None  # no end marker: cut short; libjpeg would fill in grey, Pillow refuses
    if ahead is not None and ahead.data is data:
        pixels = ahead.pixels()
        if pixels is None:
            return None  # a damaged or unusual file: Pillow's decoder says what is wrong
    else:
        try:
            pixels = imagecodecs.jpeg8_decode(data)
        except Exception:
            return None  # a damaged or unusual file: Pillow's decoder says what is wrong
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.shape != (im.height, im.width, len(im.mode)) or pixels.dtype != np.uint8:
        return None
    meta, exif = _pil_meta(im)
    orientation = exif.get(ExifTags.Base.Orientation, 1)
    if orientation in _UPRIGHT:
        pixels = _UPRIGHT[orientation](pixels)
    return Samples(np.ascontiguousarray(pixels), im.mode, "8", meta)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _read_source(source: str | os.PathLike[str] | BinaryIO) -> tuple[str, bytes]:
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if name == "-":
            return "<stdin>", sys.stdin.buffer.read()
        if not os.path.exists(name):
            raise ImageReadError(f"{name}: no such file")
        if os.path.isdir(name):
            raise ImageReadError(f"{name}: is a directory, not an image")
        try:
            with open(name, "rb") as fh:
                return name, fh.read()
        except OSError as exc:
            raise ImageReadError(f"{name}: cannot read ({exc.strerror or exc})") from None
    return getattr(source, "name", "<stream>"), source.read()


def _u8(im: PILImage.Image) -> NDArray[np.uint8]:
    """A Pillow image's 8-bit samples (``np.asarray`` takes the bytes: no float conversion)."""
    return np.asarray(im, dtype=np.uint8)


def _descriptive_exif(exif: PILImage.Exif) -> bytes | None:
    """The EXIF to write back: descriptive tags, Exif and GPS sub-IFDs, Orientation 1."""
    kept = PILImage.Exif()
    for tag in _KEPT_EXIF_TAGS:
        if tag in exif:
            kept[tag] = exif[tag]
    description = kept.get(ExifTags.Base.ImageDescription)
    if isinstance(description, str) and description.lstrip().startswith('{"shape":'):
        del kept[ExifTags.Base.ImageDescription]  # tifffile's array shape: stale elsewhere
    if ExifTags.Base.Orientation in exif:
        kept[ExifTags.Base.Orientation] = 1
    for tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
        if tag in exif:
            sub = dict(exif.get_ifd(tag))
            if tag == ExifTags.IFD.Exif:
                for dropped in _DROPPED_EXIF_IFD_TAGS:
                    sub.pop(dropped, None)
            if sub:
                kept[tag] = sub
    return kept.tobytes() if len(kept) else None


def _without_sub_ifds(exif: bytes) -> bytes | None:
    """EXIF for a TIFF output: Pillow's libtiff writer fails on the Exif and GPS sub-IFDs."""
    source = PILImage.Exif()
    source.load(exif)
    kept = PILImage.Exif()
    for tag, value in source.items():
        if tag not in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            kept[tag] = value
    return kept.tobytes() if len(kept) else None


def _colour_key(im: PILImage.Image, png_bit_depth: int | None) -> int | tuple[int, ...] | None:
    """A grey or RGB image's ``tRNS`` colour key, on the scale of its pixel values."""
    value = im.info.get("transparency")
    if im.mode == "RGB" and isinstance(value, tuple) and len(value) == 3:
        return tuple(int(v) for v in value)
    if im.mode in ("1", "L", "I;16", "I") and isinstance(value, int):
        if im.mode == "L" and png_bit_depth in (2, 4):
            return value * (255 // (2**png_bit_depth - 1))  # Pillow scales 2/4-bit grey to 8
        return value  # mode "1": Pillow already gives 0 or 255
    return None


def _key_alpha(values: NDArray[Any], key: int | tuple[int, ...], dtype: Any) -> NDArray[Any]:
    """Alpha for a colour key: 0 where a pixel equals the key, else the top value of
    ``dtype`` (uint8 or uint16); ``(H, W, 1)``."""
    match = values == np.asarray(key, dtype=np.int64)
    if match.ndim == 3:
        match = match.all(axis=2)
    return ((~match) * np.iinfo(dtype).max).astype(dtype)[:, :, np.newaxis]


def _pil_meta(
    im: PILImage.Image, exif_bytes: bytes | None | bool = False
) -> tuple[ImageMeta, PILImage.Exif]:
    """An opened (not necessarily decoded) image's metadata to keep, and its EXIF
    (``exif_bytes``: the EXIF found by the caller, for a PNG, whose ``getexif`` would decode
    the whole image to look for it)."""
    meta = ImageMeta(format=im.format, source_mode=im.mode)
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        meta.notes.append(f"{im.format} has {frames} frames; using the first")
    meta.icc_profile = im.info.get("icc_profile")
    dpi = im.info.get("dpi")
    if dpi is not None:
        try:
            meta.dpi = (float(dpi[0]), float(dpi[1]))
        except (TypeError, ValueError, IndexError):
            meta.dpi = None
    if exif_bytes is False:
        exif = im.getexif()
    else:
        exif = PILImage.Exif()
        if exif_bytes:
            exif.load(exif_bytes)
    meta.exif = _descriptive_exif(exif)
    return meta, exif


def _from_pil(im: PILImage.Image, name: str, *, png_bit_depth: int | None = None) -> Samples:
    """Stored samples and metadata of a decoded Pillow image (``png_bit_depth``: from a PNG's
    IHDR)."""
    meta, exif = _pil_meta(im)
    icc = meta.icc_profile
    key = _colour_key(im, png_bit_depth)
    tiff_bits = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
    if exif.get(ExifTags.Base.Orientation, 1) not in (None, 1):
        from PIL import ImageOps

        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode == "1":
        pixels, bands, depth = _u8(im.convert("L")), "L", "8"
    elif mode in ("L", "LA", "RGB", "RGBA"):
        pixels, bands, depth = _u8(im), mode, "8"
    elif mode in ("La", "RGBa", "RGBX"):
        target = {"La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}[mode]
        pixels, bands, depth = _u8(im.convert(target)), target, "8"
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        target = "RGBA" if has_alpha else "RGB"
        pixels, bands, depth = _u8(im.convert(target)), target, "8"
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        if mode == "CMYK" and icc:
            meta.notes.append(
                "CMYK converted to RGB without colour management; its ICC "
                "profile is not written to the output"
            )
        icc = None if mode == "CMYK" else icc
        pixels, bands, depth = _u8(im.convert("RGB")), "RGB", "8"
    elif mode.startswith("I;16"):
        pixels, bands, depth = np.asarray(im).astype(np.uint16), "L", "16"
    elif mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            meta.notes.append(
                "integer samples outside 0..65535 (signed, or wider than 16 bits): read as "
                "float, unscaled"
            )
            pixels, bands, depth = arr.astype(np.float32), "L", "float"
        else:
            pixels, bands, depth = arr.astype(np.uint16), "L", "16"
    elif mode == "F":
        pixels, bands, depth = np.asarray(im, np.float32), "L", "float"
    else:
        raise ImageReadError(f"{name}: unsupported image mode '{mode}'")
    meta.icc_profile = icc
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if key is not None and bands in ("L", "RGB"):
        values = np.asarray(im.convert("L") if mode == "1" else im)
        pixels = np.concatenate([pixels, _key_alpha(values, key, pixels.dtype)], axis=2)
        bands += "A"
    if depth == "8" and tiff_bits:
        bits = max(tiff_bits) if isinstance(tiff_bits, tuple) else int(tiff_bits)
        if bits > 8:
            meta.notes.append(
                f"{bits}-bit samples read as 8-bit (Pillow cannot read this {mode} TIFF "
                "at full depth)"
            )
    pixels = np.ascontiguousarray(pixels, dtype=SAMPLE_TYPES[depth])
    return Samples(pixels, bands, depth, meta)  # type: ignore[arg-type]


# -- 16-bit colour PNG (Pillow would reduce it to 8 bits) -------------------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"

#: Adam7 passes: first column, first row, column step, row step.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


class _PngHeader(NamedTuple):
    width: int
    height: int
    bit_depth: int
    colour: int
    compression: int
    filter_method: int
    interlace: int


def _png_header(data: bytes) -> _PngHeader | None:
    """A PNG's IHDR fields, or None if ``data`` does not start like a PNG."""
    if not data.startswith(_PNG_SIG) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    return _PngHeader(*struct.unpack(">IIBBBBB", data[16:29]))


def _png_chunks(data: bytes, name: str) -> list[tuple[bytes, bytes]]:
    chunks = []
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ImageReadError(f"{name}: cannot decode image (truncated PNG chunk)")
        chunks.append((ctype, body))
        pos += 12 + length
        if ctype == b"IEND":
            break
    return chunks


def _read_png16_colour(data: bytes, header: _PngHeader, name: str, limit: int | None) -> Samples:
    """Decode a 16-bit RGB/RGBA/LA PNG, interlaced or not (Pillow would give 8 bits)."""

    width, height, _, colour, compression, filter_method, interlace = header
    if width == 0 or height == 0 or compression or filter_method or interlace not in (0, 1):
        raise ImageReadError(f"{name}: cannot decode image (invalid PNG header)")
    check_pixel_limit(width, height, name, limit)
    channels = {2: 3, 4: 2, 6: 4}[colour]
    chunks = _png_chunks(data, name)
    # the pixels by libpng/spng through imagecodecs: as fast as the hand-written unfilter
    # (105 against 135 ms for a 3-MP RGB 16-bit PNG), interlacing included
    import imagecodecs

    try:
        arr = np.asarray(imagecodecs.png_decode(data))
    except Exception as exc:
        raise ImageReadError(f"{name}: cannot decode image ({_reason(exc)})") from None
    if arr.ndim == 3 and arr.shape[2] == channels + 1:
        arr = arr[..., :channels]  # a colour key libpng made alpha: made again below
    if (
        arr.shape[:2] != (height, width)
        or arr.dtype != np.uint16
        or arr.size != (height * width * channels)
    ):
        raise ImageReadError(f"{name}: cannot decode image (PNG data do not match its header)")
    arr = arr.reshape(height, width, channels)
    meta = ImageMeta(
        format="PNG", source_mode=f"{'RGB' if colour == 2 else 'RGBA' if colour == 6 else 'LA'};16"
    )
    key: tuple[int, ...] | None = None
    exif: PILImage.Exif | None = None
    for ctype, body in chunks:
        if ctype == b"iCCP":
            from PIL import PngImagePlugin  # (its limit on a chunk's inflated size)

            _, _, rest = body.partition(b"\x00")
            try:
                inflate = zlib.decompressobj()
                profile = inflate.decompress(rest[1:], PngImagePlugin.MAX_TEXT_CHUNK)
            except zlib.error:
                meta.notes.append("unreadable ICC profile ignored")
                continue
            if inflate.unconsumed_tail:
                meta.notes.append(
                    f"ICC profile ignored: larger than {PngImagePlugin.MAX_TEXT_CHUNK} bytes"
                )
            else:
                meta.icc_profile = profile
        elif ctype == b"pHYs" and len(body) == 9:
            px, py, unit = struct.unpack(">IIB", body)
            if unit == 1:
                meta.dpi = (px * 0.0254, py * 0.0254)
        elif ctype == b"tRNS" and colour == 2 and len(body) == 6:
            key = struct.unpack(">HHH", body)
        elif ctype == b"eXIf" and exif is None:
            exif = PILImage.Exif()
            try:
                exif.load(body)
            except Exception:  # noqa: BLE001 - a damaged EXIF block is dropped, as by Pillow
                meta.notes.append("unreadable EXIF ignored")
                exif = PILImage.Exif()
    bands = {2: "RGB", 4: "LA", 6: "RGBA"}[colour]
    pixels = arr.astype(np.uint16)
    if key is not None:
        pixels = np.concatenate([pixels, _key_alpha(arr, key, np.uint16)], axis=2)
        bands = "RGBA"
    if exif is not None:  # as Pillow's 8-bit path: descriptive tags kept, turned upright
        meta.exif = _descriptive_exif(exif)
        turn = _UPRIGHT.get(exif.get(ExifTags.Base.Orientation, 1))
        if turn is not None:
            pixels = turn(pixels)
    return Samples(np.ascontiguousarray(pixels), bands, "16", meta)


# -- writing ---------------------------------------------------------------------------------


def to_depth(pixels: NDArray[np.floating], depth: Depth, out: NDArray | None = None) -> NDArray:
    """[0, 1] floats to uint8/uint16 by rounding to nearest (clipped); float32 for "float".
    ``out``: a C-contiguous array of the result's shape and type to write into.

    >>> to_depth(np.array([0.0, 1.4 / 255, 1.6 / 255, 2.0]), "8").tolist()
    [0, 1, 2, 255]
    """
    if depth == "float":
        if out is None:
            return np.asarray(pixels, dtype=np.float32)
        np.copyto(out, pixels, casting="same_kind")
        return out
    top = 255.0 if depth == "8" else 65535.0
    src = np.ascontiguousarray(pixels)
    if src.dtype not in (np.float32, np.float64):
        src = src.astype(np.float64)
    dtype = np.uint8 if depth == "8" else np.uint16
    if out is None:
        out = np.empty(src.shape, dtype)
    elif out.shape != src.shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {src.shape} {np.dtype(dtype)} array")
    # one pass in C: the product and the rounding in double (exact ties: a float32 times 255
    # or 65535 is exact in double, so clipping after scaling is the same as before)
    native.to_depth(src.reshape(-1), out.reshape(-1), top, 0 if src.dtype == np.float32 else 1)
    return out.reshape(src.shape)


def _format_for(dest_name: str, format: str | None) -> str:
    if format:
        key = format.lower().lstrip(".")
        if key not in FORMAT_NAMES:
            raise UsageError(f"unknown image format '{format}'; use png, jpeg, tiff, webp or bmp")
        return FORMAT_NAMES[key]
    if dest_name == "-":
        raise UsageError("writing to standard output needs --format (png, jpeg, tiff, webp, bmp)")
    ext = _suffix(dest_name)
    if ext not in EXTENSIONS:
        if os.path.isdir(dest_name):
            raise PathError(f"{dest_name}: is a folder; give an output file name")
        raise UsageError(
            f"cannot tell the image format from '{dest_name}'; use .png, .jpg, .tif, .webp or .bmp"
        )
    return EXTENSIONS[ext]


def _check_encodable(
    fmt: str,
    bands: str,
    depth: Depth,
    *,
    quality: int | None,
    compress_level: int | None,
    name: str,
    size: tuple[int, int] | None = None,
    tiff_compression: str | None = None,
) -> None:
    """Raise the error encoding ``bands`` at ``depth`` (an image of ``size``, width and
    height, when given) as ``fmt`` would meet, if any."""
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"quality must be 1..100, got {quality}")
    if compress_level is not None and not 0 <= compress_level <= 9:
        raise UsageError(f"PNG compression level must be 0..9, got {compress_level}")
    if tiff_compression is not None:
        from .tiff_codec import COMPRESSIONS

        if tiff_compression not in COMPRESSIONS:
            raise UsageError(
                f"TIFF compression must be {', '.join(list(COMPRESSIONS)[:-1])} or none, got "
                f"'{tiff_compression}'"
            )
        if fmt != "TIFF":
            raise UsageError(
                f"{name}: --tiff-compression is for TIFF output, and this is {fmt}; write .tif "
                "or leave it out"
            )
    if depth not in ("8", "16", "float"):
        raise UsageError(f"depth must be 8, 16 or float, got '{depth}'")
    if bands not in _BANDS_BY_CHANNELS.values():
        raise UsageError(f"bands must be L, LA, RGB or RGBA, got '{bands}'")
    if fmt == "JPEG" and bands in ("LA", "RGBA"):
        raise ImageWriteError(
            f"{name}: JPEG cannot store transparency; write .png, .webp or .tif instead, or "
            "flatten it with --background COLOR"
        )
    if depth == "16":
        if fmt not in ("PNG", "TIFF"):
            raise ImageWriteError(
                f"{name}: {fmt} cannot store 16-bit {bands}; write .png or .tif or use --depth 8"
            )
    elif depth == "float":
        if fmt != "TIFF":
            raise ImageWriteError(
                f"{name}: float output needs a .tif (got {fmt}); use --depth 16 or --depth 8"
            )
    elif fmt == "BMP" and bands == "LA":
        raise ImageWriteError(
            f"{name}: BMP cannot store grey with alpha; write .png, or flatten it with "
            "--background COLOR"
        )
    side = _MAX_SIDE.get(fmt)
    if size is not None and side is not None and max(size) > side:
        raise ImageWriteError(
            f"{name}: {fmt} is at most {side} pixels a side, and the image is "
            f"{size[0]}x{size[1]}; write .png or .tif instead"
        )


#: The largest width or height the encoders write (libjpeg-turbo's JPEG_MAX_DIMENSION,
#: libwebp's WEBP_MAX_DIMENSION, GIF's 16-bit fields).
_MAX_SIDE = {"JPEG": jpeg_codec.MAX_SIDE, "WEBP": 16383, "GIF": 65535}


def _check_destination(name: str) -> None:
    """Raise the error writing to the path ``name`` would meet before encoding (not "-")."""
    folder = parent_folder(name)
    if not os.path.isdir(folder):
        raise ImageWriteError(f"{name}: output folder '{folder}' does not exist")
    if os.path.isdir(name):
        raise ImageWriteError(f"{name}: is a directory")


def check_output(
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    bands: str,
    depth: Depth,
    format: str | None = None,
    quality: int | None = None,
    compress_level: int | None = None,
    size: tuple[int, int] | None = None,
    tiff_compression: str | None = None,
) -> str:
    """Check that :func:`write_image` could write ``bands`` at ``depth`` (an image of
    ``size``, width and height, when given) to ``dest``; no encoding.

    Raises the :class:`UsageError` or :class:`ImageWriteError` that writing would raise
    (unknown extension or format, ``"-"`` without ``format``, JPEG with alpha, 16-bit or
    float data, a missing output folder...), so a command can fail before filtering.
    Returns the Pillow format name (``"PNG"``, ``"JPEG"``, ...).
    """
    if not isinstance(dest, (str, os.PathLike)):
        name = str(getattr(dest, "name", "<stream>"))
        fmt = _format_for("-", format)
    else:
        name = os.fspath(dest)
        fmt = _format_for(name, format)
    _check_encodable(
        fmt, bands, depth, quality=quality, compress_level=compress_level, name=name, size=size,
        tiff_compression=tiff_compression,
    )  # fmt: skip
    if isinstance(dest, (str, os.PathLike)) and name != "-":
        _check_destination(name)
    return fmt


def encode_image(
    image: Image,
    fmt: str,
    *,
    depth: Depth | None = None,
    quality: int | None = None,
    compress_level: int | None = None,
    name: str = "<output>",
    tiff_compression: str | None = None,
) -> bytes:
    """Encode an image into the bytes of a file of Pillow format ``fmt``."""
    depth = depth or image.depth
    bands = image.bands
    _check_encodable(
        fmt, bands, depth, quality=quality, compress_level=compress_level, name=name,
        tiff_compression=tiff_compression,
    )  # fmt: skip
    values = to_depth(image.pixels, depth)
    return encode_samples(
        Samples(values, bands, depth, image.meta),
        fmt,
        quality=quality,
        compress_level=compress_level,
        name=name,
        tiff_compression=tiff_compression,
    )


def encode_samples(
    stored: Samples,
    fmt: str,
    *,
    quality: int | None = None,
    compress_level: int | None = None,
    name: str = "<output>",
    tiff_compression: str | None = None,
) -> bytes:
    """Encode output samples (uint8, uint16 or float32 by depth) as a file of format ``fmt``.

    PNG is written by :mod:`convcli.png_codec` (every band layout, 8 or 16 bits), TIFF by
    :mod:`convcli.tiff_codec` (``tiff_compression``: a name of its ``COMPRESSIONS``,
    default deflate; only for TIFF), the other formats by Pillow.
    """
    depth, bands, values, meta = stored.depth, stored.bands, stored.samples, stored.meta
    size = (values.shape[1], values.shape[0])
    _check_encodable(
        fmt, bands, depth, quality=quality, compress_level=compress_level, name=name, size=size,
        tiff_compression=tiff_compression,
    )  # fmt: skip
    level = DEFAULT_PNG_LEVEL if compress_level is None else compress_level
    if fmt == "PNG":
        return png_codec.encode_png(
            values, bands, level=level, icc_profile=meta.icc_profile, dpi=meta.dpi,
            exif=meta.exif,
        )  # fmt: skip
    if fmt == "TIFF":
        from . import tiff_codec

        buf = io.BytesIO()
        tiff_codec.write_tiff(
            buf, [values], height=values.shape[0], width=values.shape[1], bands=bands,
            dtype=values.dtype, icc_profile=meta.icc_profile, dpi=meta.dpi,
            tags=tiff_tags(meta), compression=tiff_compression or tiff_codec.DEFAULT_COMPRESSION,
        )  # fmt: skip
        return buf.getvalue()
    if depth in ("16", "float"):  # pragma: no cover - only PNG and TIFF hold them
        raise ImageWriteError(f"{name}: {fmt} cannot store {depth} samples")
    if fmt == "JPEG":
        fast = _jpeg_bytes(values, meta, quality or DEFAULT_JPEG_QUALITY)
        if fast is not None:
            return fast
    else:
        arr = values[:, :, 0] if bands == "L" else values
        pil = PILImage.fromarray(np.ascontiguousarray(arr))  # uint8 by channel count
    params = pillow_save_params(fmt, meta, quality=quality)
    buf = io.BytesIO()
    try:
        pil.save(buf, format=fmt, **params)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ImageWriteError(f"{name}: cannot encode as {fmt} ({_reason(exc)})") from None
    return buf.getvalue()


def _jpeg_bytes(values: NDArray[np.uint8], meta: ImageMeta, quality: int) -> bytes | None:
    """A JPEG from grey or RGB samples by imagecodecs (libjpeg-turbo, from the array: no
    Pillow copy of the image), with the metadata segments Pillow would write: the same
    bytes as Pillow's ``save(..., quality=quality, exif=..., icc_profile=..., dpi=...)``
    (tested).  None if imagecodecs is missing or Pillow should say why it cannot."""
    try:
        data = jpeg_codec.encode(values, quality)
    except ImportError:  # pragma: no cover - imagecodecs is a dependency
        return None
    return jpeg_codec.with_metadata(
        data, icc_profile=meta.icc_profile, dpi=meta.dpi, exif=meta.exif
    )


def tiff_tags(meta: ImageMeta) -> dict[int, Any]:
    """The descriptive first-IFD EXIF tags to write into a TIFF (text values), and
    Orientation 1 if the source had an orientation."""
    if not meta.exif:
        return {}
    exif = PILImage.Exif()
    exif.load(meta.exif)
    tags: dict[int, Any] = {
        int(t): str(exif[t]).rstrip("\x00")
        for t in _KEPT_EXIF_TAGS
        if t in exif and isinstance(exif[t], str)
    }
    if ExifTags.Base.Orientation in exif:
        tags[int(ExifTags.Base.Orientation)] = 1  # the pixels are stored upright
    return tags


def pillow_save_params(fmt: str, meta: ImageMeta, *, quality: int | None) -> dict[str, object]:
    """Pillow's save options for ``fmt``: metadata kept, quality and compression."""
    params: dict[str, object] = {}
    if meta.icc_profile and fmt in _ICC_FORMATS:
        params["icc_profile"] = meta.icc_profile
    if meta.dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP", "WEBP"):
        params["dpi"] = meta.dpi
    exif = _without_sub_ifds(meta.exif) if meta.exif and fmt == "TIFF" else meta.exif
    if exif and fmt in _EXIF_FORMATS:
        params["exif"] = exif
    if fmt == "JPEG":
        params["quality"] = quality or DEFAULT_JPEG_QUALITY
    elif fmt == "WEBP":
        if quality is None:
            params["lossless"] = True
        else:
            params["quality"] = quality
    elif fmt == "TIFF":
        params["compression"] = "tiff_deflate"
    return params


def write_image(
    image: Image,
    dest: str | os.PathLike[str] | BinaryIO,
    *,
    depth: Depth | None = None,
    format: str | None = None,
    quality: int | None = None,
    compress_level: int | None = None,
    tiff_compression: str | None = None,
) -> None:
    """Write an image (``"-"``: standard output), atomically when ``dest`` is a path.

    ``tiff_compression``: deflate (default), lzw, zstd, packbits or none, for TIFF output
    only (a :class:`UsageError` for another format).

    The file is encoded in memory, written to a temporary file in the
    destination folder, flushed to disk and renamed into place; on any failure
    (including KeyboardInterrupt) the temporary file is removed and an existing
    file at ``dest`` is left as it was.
    """
    if not isinstance(dest, (str, os.PathLike)):
        name = getattr(dest, "name", "<stream>")
        fmt = _format_for("-", format)
        dest.write(
            encode_image(
                image,
                fmt,
                depth=depth,
                quality=quality,
                compress_level=compress_level,
                name=str(name),
                tiff_compression=tiff_compression,
            )
        )
        return
    name = os.fspath(dest)
    fmt = _format_for(name, format)
    data = encode_image(
        image, fmt, depth=depth, quality=quality, compress_level=compress_level, name=name,
        tiff_compression=tiff_compression,
    )  # fmt: skip
    if name == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _check_destination(name)
    try:
        write_atomically(name, data)
    except OSError as exc:
        raise ImageWriteError(f"{name}: cannot write ({exc.strerror or exc})") from None
