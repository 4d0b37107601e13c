"""File to file through the strip engine: :func:`filter_file`.

The input is read into its stored samples (8-bit images stay 8-bit: a quarter of
a float32 copy), every strip is filtered and rounded while it is in cache, and
each output strip goes straight to the encoder.  A PNG output is written while
the strips are computed (compressed in parallel, see :mod:`convcli.png_codec`), and
so are a JPEG (blocks of MCU rows encoded in parallel and joined by restart markers,
see :mod:`convcli.jpeg_codec`) and a TIFF (:mod:`convcli.tiff_codec`), whose input is
also read strip by strip: TIFF to TIFF runs in bounded memory at any size.  Other
formats are assembled as output samples and encoded by Pillow.  Every
path output is written atomically: a failure at any point (a bad image, a full
disk, Ctrl-C) leaves no partial file and an existing output as it was.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from .. import jpeg_codec
from ..atomic import open_atomically
from ..errors import FilterError, ImageWriteError
from ..image_io import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_PNG_LEVEL,
    Samples,
    check_output,
    encode_samples,
    read_samples,
    tiff_tags,
)
from ..jpeg_codec import JpegWriter
from ..kernels import Kernel
from ..png_codec import PngWriter
from ..process import FilterOptions, FilterReport
from ..tiff_codec import DEFAULT_COMPRESSION, write_tiff
from .engine import Stream, executor, plan_program


@dataclass
class FileReport:
    """What :func:`filter_file` did: the image, the filter report, timings in seconds."""

    width: int
    height: int
    bands: str
    depth: str  #: the input's
    format: str  #: the output's (Pillow's name)
    filter: FilterReport
    read_s: float = 0.0
    #: filtering (with the writing, which overlaps it, when the output streams)
    filter_s: float = 0.0
    write_s: float = 0.0  #: encoding and writing, when it follows the filtering
    strip_rows: int = 0
    streamed: bool = False  #: the output was encoded strip by strip
    notes: list[str] = field(default_factory=list)  #: warnings about the input


def filter_file(
    source: str | os.PathLike[str] | BinaryIO,
    dest: str | os.PathLike[str] | BinaryIO,
    kernels: Sequence[Kernel] | None,
    options: FilterOptions = FilterOptions(),
    *,
    edge: str | None = None,
    sigma: float = 1.4,
    format: str | None = None,
    quality: int | None = None,
    compress_level: int | None = None,
    tiff_compression: str | None = None,
    max_pixels: int | None = None,
    strip_rows: int | None = None,
    workers: int | None = None,
    on_read: Callable[[Samples], None] | None = None,
    exclusive: bool = False,
    prefetched: jpeg_codec.Prefetched | None = None,
) -> FileReport:
    """Filter an image file into another, strip by strip.

    ``kernels`` are applied in turn as by :func:`convcli.filter_image` (or, with
    ``edge="sobel"|"prewitt"|"scharr"|"laplacian"|"log"``, the edge operator of
    :func:`convcli.edge_image`); the result is the same to the bit.  ``"-"`` reads
    standard input or writes standard output (then ``format`` is needed).
    ``max_pixels``: see :func:`convcli.image_io.read_samples`.  ``on_read`` is called
    with the decoded samples before any filtering (to print warnings, say).  ``exclusive``:
    never replace an existing output (an :class:`~convcli.errors.ImageWriteError` if one is
    there when the result is complete, and it is kept).  ``prefetched``: the source's
    :func:`convcli.jpeg_codec.prefetch`, started before the caller's other work.
    ``tiff_compression``: deflate (default), lzw, zstd, packbits or none, for a TIFF output
    only (a :class:`~convcli.errors.UsageError` for another format).  The output
    is checked (format, depth, folder) before filtering; errors are
    :class:`~convcli.errors.ConvcliError` with one-line messages naming the file.

    Examples
    --------
    >>> import convcli
    >>> k = convcli.load_kernel("gaussian:sigma=2")
    >>> report = convcli.filter_file("photo.jpg", "soft.png", [k])  # doctest: +SKIP
    >>> report.filter.steps[0].plan.backend  # doctest: +SKIP
    'direct'
    """
    t0 = time.perf_counter()
    stored = read_samples(source, max_pixels=max_pixels, prefetched=prefetched)
    read_s = time.perf_counter() - t0
    source_name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<stream>"
    source_name = "<stdin>" if source_name == "-" else source_name
    try:
        return _filter_stored(
            stored, dest, kernels, options, edge=edge, sigma=sigma, format=format,
            source_name=source_name, exclusive=exclusive,
            quality=quality, compress_level=compress_level, tiff_compression=tiff_compression,
            strip_rows=strip_rows, workers=workers, on_read=on_read, read_s=read_s,
        )  # fmt: skip
    finally:
        close = getattr(stored.samples, "close", None)
        if close is not None:
            close()


def _filter_stored(
    stored: Samples,
    dest: str | os.PathLike[str] | BinaryIO,
    kernels: Sequence[Kernel] | None,
    options: FilterOptions,
    *,
    edge: str | None,
    sigma: float,
    format: str | None,
    quality: int | None,
    compress_level: int | None,
    tiff_compression: str | None,
    strip_rows: int | None,
    workers: int | None,
    on_read: Callable[[Samples], None] | None,
    read_s: float,
    source_name: str,
    exclusive: bool,
) -> FileReport:
    if on_read is not None:
        on_read(stored)
    try:
        program = plan_program(stored, kernels, options, edge=edge, sigma=sigma)
    except FilterError as exc:  # about this image's content: name the file
        raise FilterError(f"{source_name}: {exc}") from None
    fmt = check_output(
        dest,
        bands=program.bands,
        depth=program.depth,  # type: ignore[arg-type]
        format=format,
        quality=quality,
        compress_level=compress_level,
        size=(stored.width, stored.height),
        tiff_compression=tiff_compression,
    )
    stream = Stream(stored, program, strip_rows=strip_rows, workers=workers)
    is_path = isinstance(dest, (str, os.PathLike)) and os.fspath(dest) != "-"
    jpeg = fmt == "JPEG" and is_path and _streams_as_jpeg(stream)
    if jpeg and strip_rows is None and stream.strip_rows % jpeg_codec.mcu_rows(stream.bands):
        # strips of whole MCU rows go to the encoder as they are (no joining copies)
        mcu = jpeg_codec.mcu_rows(stream.bands)
        rows = -(-stream.strip_rows // mcu) * mcu
        stream = Stream(stored, program, strip_rows=rows, workers=workers)
    report = FileReport(
        stored.width, stored.height, stored.bands, stored.depth, fmt, stream.report,
        read_s=read_s, strip_rows=stream.strip_rows, notes=list(stored.meta.notes),
    )  # fmt: skip
    t1 = time.perf_counter()
    if (fmt in ("PNG", "TIFF") and is_path) or jpeg:
        if fmt == "PNG":
            _stream_png(stream, os.fspath(dest), compress_level, exclusive)  # type: ignore[arg-type]
        elif fmt == "JPEG":
            _stream_jpeg(stream, os.fspath(dest), quality, exclusive)  # type: ignore[arg-type]
        else:
            _stream_tiff(stream, os.fspath(dest), tiff_compression, exclusive)  # type: ignore[arg-type]
        report.streamed = True
        report.filter_s = time.perf_counter() - t1
    else:
        out = stream.collect()
        stream.stored = stored = None  # type: ignore[assignment]  # the input's memory goes
        t2 = time.perf_counter()
        report.filter_s = t2 - t1
        name = os.fspath(dest) if isinstance(dest, (str, os.PathLike)) else "<stream>"
        data = encode_samples(
            out, fmt, quality=quality, compress_level=compress_level, name=name,
            tiff_compression=tiff_compression,
        )  # fmt: skip
        if is_path:
            _write(name, data, exclusive)
        elif isinstance(dest, (str, os.PathLike)):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            dest.write(data)
        report.write_s = time.perf_counter() - t2
    return report


_EXISTS = "already exists (written by another run meanwhile?); kept, not replaced"


def _write(name: str, data: bytes, exclusive: bool) -> None:
    with _output(name, exclusive) as fh:
        fh.write(data)


@contextlib.contextmanager
def _output(name: str, exclusive: bool) -> Iterator[BinaryIO]:
    """The output file, written atomically, its failures as one-line ImageWriteErrors."""
    try:
        with open_atomically(name, exclusive=exclusive) as fh:
            yield fh
    except FileExistsError:
        raise ImageWriteError(f"{name}: {_EXISTS}") from None
    except OSError as exc:
        raise ImageWriteError(f"{name}: cannot write ({exc.strerror or exc})") from None


def _feed(writer: PngWriter | JpegWriter, stream: Stream) -> None:
    """Every strip into ``writer``, then its end; its pending blocks waited for on failure."""
    try:
        for strip in stream:
            writer.write(strip)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def _stream_png(stream: Stream, name: str, compress_level: int | None, exclusive: bool) -> None:
    meta = stream.stored.meta
    level = DEFAULT_PNG_LEVEL if compress_level is None else compress_level
    with _output(name, exclusive) as fh:
        writer = PngWriter(
            fh, stream.width, stream.height, stream.bands, stream.dtype, level=level,
            icc_profile=meta.icc_profile, dpi=meta.dpi, exif=meta.exif,
            pool=executor(), workers=stream.workers,
        )  # fmt: skip
        _feed(writer, stream)


def _streams_as_jpeg(stream: Stream) -> bool:
    """Whether :class:`~convcli.jpeg_codec.JpegWriter` takes this output: 8-bit grey or
    RGB, more than one block tall, with EXIF that fits a segment (else Pillow says why)."""
    exif = stream.stored.meta.exif
    return (
        stream.bands in ("L", "RGB")
        and stream.dtype == np.uint8
        and stream.height > jpeg_codec.block_rows(stream.width, stream.bands)
        and not (exif and len(exif) > 65533)
    )


def _stream_jpeg(stream: Stream, name: str, quality: int | None, exclusive: bool) -> None:
    meta = stream.stored.meta
    with _output(name, exclusive) as fh:
        writer = JpegWriter(
            fh, stream.width, stream.height, stream.bands,
            quality=quality or DEFAULT_JPEG_QUALITY, icc_profile=meta.icc_profile,
            dpi=meta.dpi, exif=meta.exif, pool=executor(), workers=stream.workers,
        )  # fmt: skip
        _feed(writer, stream)


def _stream_tiff(stream: Stream, name: str, tiff_compression: str | None, exclusive: bool) -> None:
    meta = stream.stored.meta
    with _output(name, exclusive) as fh:
        write_tiff(
            fh, stream, height=stream.height, width=stream.width, bands=stream.bands,
            dtype=stream.dtype, icc_profile=meta.icc_profile, dpi=meta.dpi,
            tags=tiff_tags(meta), pool=executor(), workers=stream.workers,
            compression=tiff_compression or DEFAULT_COMPRESSION,
        )  # fmt: skip
