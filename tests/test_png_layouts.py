"""PNG layouts read row by row besides 8/16-bit L, LA, RGB, RGBA: palette (1/2/4/8 bits, with
or without tRNS), 1/2/4-bit grey, and a tRNS colour key on grey or RGB.  The row reader
(:class:`convcli.png_codec.PngRows`) must give exactly the samples, bands, depth and source
mode of the whole-image path (``read_samples(path, lazy=False)``: Pillow, or convcli's own
16-bit colour decoder)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

import convcli
from convcli import native, png_codec
from convcli.errors import ImageReadError
from convcli.image_io import Image, read_samples, unit_float, write_image
from convcli.kernels import builtin_kernel
from convcli.process import FilterOptions, filter_image

#: Without the C extension (CONVCLI_NATIVE=0) PNGs are decoded whole: nothing is streamed.
needs_native = pytest.mark.skipif(
    not native.AVAILABLE, reason="PNGs are read row by row only with the C extension"
)

WIDTHS = (1, 7, 9, 17)


# -- a reference PNG writer (slow, test only): any colour type, bit depth and row filters


def _chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def _pack(values: np.ndarray, depth: int) -> np.ndarray:
    """``(h, n)`` sample values as PNG row bytes, ``depth`` bits each, first in the high bits,
    the last byte padded with zeros."""
    h, n = values.shape
    if depth == 16:
        return values.astype(">u2").view(np.uint8).reshape(h, -1)
    if depth == 8:
        return values.astype(np.uint8)
    per = 8 // depth
    padded = np.zeros((h, -(-n // per) * per), np.int64)
    padded[:, :n] = values
    shifts = np.arange(8 - depth, -1, -depth)
    return (padded.reshape(h, -1, per) << shifts).sum(axis=2).astype(np.uint8)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(data: np.ndarray, bpp: int, filters: list[int]) -> bytes:
    out = bytearray()
    prev = np.zeros(data.shape[1], np.int64)
    for y, row in enumerate(data.astype(np.int64)):
        kind = filters[y % len(filters)]
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if kind == 0:
            f = row
        elif kind == 1:
            f = row - left
        elif kind == 2:
            f = row - prev
        elif kind == 3:
            f = row - (left + prev) // 2
        else:
            pred = [
                _paeth(int(a), int(b), int(c)) for a, b, c in zip(left, prev, upleft, strict=True)
            ]
            f = row - np.array(pred, np.int64)
        out += bytes([kind]) + (f % 256).astype(np.uint8).tobytes()
        prev = row
    return bytes(out)


def _png(
    values: np.ndarray,
    colour: int,
    depth: int,
    chunks: bytes = b"",
    filters=(0, 1, 2, 3, 4),
    *,
    damage=None,
) -> bytes:
    """``(h, w, samples)`` values as a non-interlaced PNG, ``chunks`` (PLTE, tRNS) before the
    image data; the rows take the filter types in turn (``damage``: changes the filtered
    bytes, a bytearray, before they are compressed)."""
    h, w, c = values.shape
    data = _pack(values.reshape(h, w * c), depth)
    bpp = max(1, c * depth // 8)
    raw = bytearray(_filtered(data, bpp, list(filters)))
    if damage is not None:
        damage(raw)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + chunks
        + _chunk(b"IDAT", zlib.compress(bytes(raw)))
        + _chunk(b"IEND", b"")
    )


def _same_as_whole(path, *, lazy_required: bool = True) -> png_codec.PngRows | None:
    """Read ``path`` row by row and whole: the same samples, bands, depth and source mode."""
    whole = read_samples(path, lazy=False)
    assert isinstance(whole.samples, np.ndarray)
    with convcli.read_samples(path) as lazy:
        rows = lazy.samples
        if lazy_required:
            assert isinstance(rows, png_codec.PngRows), "not read row by row"
        assert (lazy.bands, lazy.depth) == (whole.bands, whole.depth)
        assert lazy.meta.source_mode == whole.meta.source_mode
        h = whole.samples.shape[0]
        got = rows[0:h]
        assert got.dtype == whole.samples.dtype and got.shape == whole.samples.shape
        np.testing.assert_array_equal(got, whole.samples)
        if isinstance(rows, png_codec.PngRows):  # a second pass, a row at a time
            rows.rewind()
            for y in range(h):
                np.testing.assert_array_equal(rows[y : y + 1], whole.samples[y : y + 1])
    return rows if isinstance(rows, png_codec.PngRows) else None


# -- palette images written by Pillow


@needs_native
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("transparency", [None, "index", "alphas"])
def test_pillow_palette_png_is_streamed_as_decoded_whole(tmp_path, bits, width, transparency):
    rng = np.random.default_rng(bits * 100 + width)
    colours = 1 << bits
    index = rng.integers(0, colours, (5, width)).astype(np.uint8)
    im = PILImage.fromarray(index, "P")
    im.putpalette(rng.integers(0, 256, 3 * colours).astype(np.uint8).tobytes())
    kw: dict = {"bits": bits}
    if transparency == "index":
        kw["transparency"] = int(index[0, 0])
    elif transparency == "alphas":  # fewer alphas than entries: the others are opaque
        kw["transparency"] = bytes(rng.integers(0, 256, max(1, colours // 2)).astype(np.uint8))
    path = tmp_path / "p.png"
    im.save(path, **kw)
    assert path.read_bytes()[24:26] == bytes([bits, 3])  # bit depth, colour type 3
    rows = _same_as_whole(path)
    assert rows.bands == ("RGB" if transparency is None else "RGBA")
    assert convcli.read_samples(path, lazy=False).meta.source_mode == "P"


@needs_native
@pytest.mark.parametrize("width", WIDTHS)
def test_pillow_one_bit_grey_is_streamed(tmp_path, width):
    values = np.random.default_rng(width).random((6, width)) > 0.5
    path = tmp_path / "one.png"
    PILImage.fromarray(values).save(path)
    assert path.read_bytes()[24:26] == bytes([1, 0])
    _same_as_whole(path)


# -- every layout, written by the reference writer, over sizes, contents and row filters

#: (colour type, bit depth, tRNS): "key" a colour key, "alphas" per-entry palette alpha.
LAYOUTS = [
    *[(3, d, t) for d in (1, 2, 4, 8) for t in (None, "alphas")],
    *[(0, d, t) for d in (1, 2, 4) for t in (None, "key")],
    (0, 8, "key"),
    (0, 16, "key"),
    (2, 8, "key"),
    (2, 16, "key"),
]


@needs_native
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    layout=st.sampled_from(LAYOUTS),
    width=st.one_of(st.sampled_from(WIDTHS), st.integers(1, 40)),
    height=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    filters=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    entries=st.integers(1, 256),
)
def test_every_layout_streams_as_decoded_whole(
    tmp_path, layout, width, height, seed, filters, entries
):
    colour, depth, trns = layout
    rng = np.random.default_rng(seed)
    samples = 3 if colour == 2 else 1
    top = (1 << depth) - 1
    values = rng.integers(0, top + 1, (height, width, samples))
    chunks = b""
    if colour == 3:
        # a PLTE of any length up to 256 entries: indices past it are black (as Pillow has it)
        entries = min(entries, top + 1) if rng.random() < 0.7 else entries
        chunks += _chunk(b"PLTE", rng.integers(0, 256, 3 * entries).astype(np.uint8).tobytes())
        if trns:
            alphas = rng.integers(0, 256, int(rng.integers(0, entries + 1)))
            chunks += _chunk(b"tRNS", alphas.astype(np.uint8).tobytes())
    elif trns:
        key = values[rng.integers(height), rng.integers(width)]  # some pixels match it
        if rng.random() < 0.2:  # a key no pixel can equal (beyond the bit depth)
            key = np.full(samples, top + 1 if depth < 16 else top)
        values[rng.random((height, width)) < 0.3] = key
        chunks += _chunk(b"tRNS", np.asarray(key).astype(">u2").tobytes())
    path = tmp_path / "layout.png"
    path.write_bytes(_png(values, colour, depth, chunks, filters))
    rows = _same_as_whole(path)
    assert rows.bands.endswith("A") == bool(trns)


@needs_native
def test_a_key_on_one_bit_grey_is_taken_as_pillow_takes_it(tmp_path):
    """Pillow's 1-bit mode makes any tRNS grey key but 0 the value 1 (a key of 5 too)."""
    values = np.array([[[1], [0], [1], [1], [0]]])
    path = tmp_path / "k.png"
    path.write_bytes(_png(values, 0, 1, _chunk(b"tRNS", b"\x00\x05")))
    rows = _same_as_whole(path)
    np.testing.assert_array_equal(rows[0:1][0, :, 1], [0, 255, 0, 0, 255])


@needs_native
def test_rows_cross_decode_blocks(tmp_path):
    """Big enough for several blocks of rows: the row above each block is carried over."""
    rng = np.random.default_rng(7)
    index = rng.integers(0, 16, (1500, 3001)).astype(np.uint8)  # 3 blocks of about 1 MiB
    im = PILImage.fromarray(index, "P")
    im.putpalette(rng.integers(0, 256, 48).astype(np.uint8).tobytes())
    path = tmp_path / "big.png"
    im.save(path, bits=4, transparency=3)
    rows = _same_as_whole(path)
    assert rows.stride == 1501 and rows.bpp == 1  # (3001 pixels of 4 bits)


# -- errors


@needs_native
@pytest.mark.parametrize(
    ("plte", "why"),
    [
        (None, "palette image without PLTE"),
        (b"", "invalid PLTE chunk of 0 bytes: not 1 to 256 RGB entries"),
        (b"\x01\x02\x03\x04", "invalid PLTE chunk of 4 bytes: not 1 to 256 RGB entries"),
        (bytes(771), "invalid PLTE chunk of 771 bytes: not 1 to 256 RGB entries"),
    ],
)
def test_a_palette_png_without_a_usable_plte_is_one_error_line(tmp_path, plte, why):
    path = tmp_path / "bad.png"
    chunks = b"" if plte is None else _chunk(b"PLTE", plte)
    path.write_bytes(_png(np.zeros((3, 4, 1), np.int64), 3, 8, chunks))
    with pytest.raises(ImageReadError) as info:
        convcli.read_samples(path)
    message = str(info.value)
    assert message == f"{path}: cannot decode PNG ({why})"
    assert "\n" not in message


@needs_native
def test_a_damaged_palette_png_names_the_row(tmp_path):
    """The row-accurate errors hold for the new layouts too (a 1-bit palette, 9 wide)."""
    values = np.random.default_rng(3).integers(0, 2, (40, 9, 1))

    def damage(raw: bytearray) -> None:
        raw[25 * 3] = 9  # row 25's filter type (rows of 1 + 2 bytes)

    data = _png(values, 3, 1, _chunk(b"PLTE", bytes(range(6))), filters=[0], damage=damage)
    path = tmp_path / "damaged.png"
    path.write_bytes(data)
    with convcli.read_samples(path) as lazy:
        assert isinstance(lazy.samples, png_codec.PngRows)
        with pytest.raises(ImageReadError, match=r"damaged\.png: cannot decode PNG at row 25 "):
            lazy.samples[0:40]


# -- filtering a streamed palette PNG


@needs_native
def test_filter_file_on_a_palette_png_equals_the_whole_image_filter(tmp_path, monkeypatch):
    requests: list[int] = []  # the rows asked of the row reader, request by request
    getitem = png_codec.PngRows.__getitem__

    def spy(self, rows):
        out = getitem(self, rows)
        requests.append(out.shape[0])
        return out

    monkeypatch.setattr(png_codec.PngRows, "__getitem__", spy)
    rng = np.random.default_rng(11)
    index = rng.integers(0, 12, (31, 23)).astype(np.uint8)
    im = PILImage.fromarray(index, "P")
    im.putpalette(rng.integers(0, 256, 36).astype(np.uint8).tobytes())
    src = tmp_path / "p.png"
    im.save(src, transparency=bytes([0, 128, 255, 40]))
    kernels = [builtin_kernel("gaussian", sigma=1.5)]
    options = FilterOptions(backend="direct")
    out = tmp_path / "stream.png"
    report = convcli.filter_file(src, out, kernels, options, strip_rows=3)
    assert report.streamed and report.strip_rows == 3
    assert len(requests) > 3 and max(requests) < 31  # read by rows, not whole
    whole = read_samples(src, lazy=False)
    image = Image(unit_float(whole.samples, whole.depth), whole.bands, whole.depth, whole.meta)
    result, _ = filter_image(image, kernels, options)
    ref = tmp_path / "whole.png"
    write_image(result, ref)
    assert out.read_bytes() == ref.read_bytes()


def test_without_the_row_reader_the_layouts_are_still_read(tmp_path):
    """With or without the C extension the palette and keyed PNGs read the same."""
    rng = np.random.default_rng(5)
    path = tmp_path / "k.png"
    values = rng.integers(0, 16, (4, 7, 1))
    path.write_bytes(_png(values, 0, 4, _chunk(b"tRNS", b"\x00\x03")))
    _same_as_whole(path, lazy_required=False)
