"""The PNG row reader (:class:`convcli.png_codec.PngRows`) enforces every checksum and names
the first row it cannot produce: each IDAT chunk's CRC, the zlib stream's Adler-32 and its end
(even when the Adler-32 sits alone in the last IDAT chunk, after the last row), a bad CRC on a
critical chunk is an error and on an ancillary one a warning (libpng's defaults); a bad filter
type or a cut file names its row; and a failure found only at the very end leaves no output.

The PNGs are built here byte by byte (filter type 0 rows, zlib streams split into IDAT chunks at
chosen places), so the row each damage lies in is known from the construction; zlib's own
inflate of the stream's prefix is the oracle where deflate hides it.  ``PngRows`` also runs
with the NumPy fallback (``CONVCLI_NATIVE=0``); the tests through ``read_samples`` and
``filter_file`` need the C extension, without which PNGs are decoded whole by Pillow/libpng.
"""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from convcli import filter_file, native, png_codec
from convcli.cli import main
from convcli.errors import ImageReadError
from convcli.image_io import read_samples
from convcli.kernels import builtin_kernel
from convcli.png_codec import PngRows

needs_native = pytest.mark.skipif(
    not native.AVAILABLE,
    reason="without the C extension PNGs are decoded whole by Pillow/libpng, not by PngRows",
)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RNG = np.random.default_rng(20261207)
COLOUR = {"L": 0, "LA": 4, "RGB": 2, "RGBA": 6}
STORED = 10000  # bytes in each stored deflate block of :func:`_stored`


def _chunk(ctype: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(ctype + body) if crc is None else crc
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc & 0xFFFFFFFF)


def _values(height: int, width: int, bands: str, depth: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 256 if depth == 8 else 65536
    dtype = np.uint8 if depth == 8 else np.uint16
    # smooth enough for deflate to work on, noisy enough that every row differs
    ramp = np.arange(height * width * len(bands)).reshape(height, width, len(bands)) // 7
    return ((ramp + rng.integers(0, 5, ramp.shape)) % top).astype(dtype)


def _scanlines(values: np.ndarray, filters: dict[int, int] | None = None) -> bytes:
    """The rows as PNG scanlines, each with filter type 0 (None) unless ``filters`` says."""
    height = values.shape[0]
    data = values.astype(">u2") if values.dtype == np.uint16 else values
    rows = np.ascontiguousarray(data).view(np.uint8).reshape(height, -1)
    out = np.zeros((height, rows.shape[1] + 1), np.uint8)
    out[:, 1:] = rows
    for row, ftype in (filters or {}).items():
        out[row, 0] = ftype
    return out.tobytes()


def _head(values: np.ndarray, bands: str) -> bytes:
    height, width = values.shape[:2]
    depth = 8 if values.dtype == np.uint8 else 16
    ihdr = struct.pack(">IIBBBBB", width, height, depth, COLOUR[bands], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)


def _png(
    values: np.ndarray,
    bands: str,
    stream: bytes,
    cuts: list[int],
    *,
    crcs_of: bytes | None = None,
    before_end: bytes = b"",
) -> tuple[bytes, list[tuple[int, int, int]]]:
    """A PNG whose zlib stream is ``stream``, split into IDAT chunks at the stream offsets
    ``cuts``; ``crcs_of``: the stream each chunk's CRC is computed from (bit rot leaves the
    CRC of the data as it was written).  Also each chunk's stream offsets and the file offset
    of its data (to cut the file at a stream offset: :func:`_file_offset`)."""
    bounds = [0, *cuts, len(stream)]
    out = [_head(values, bands)]
    layout = []
    at = len(out[0])
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        body = stream[lo:hi]
        out.append(_chunk(b"IDAT", body, zlib.crc32(b"IDAT" + (crcs_of or stream)[lo:hi])))
        layout.append((lo, hi, at + 8))
        at += 12 + len(body)
    out.append(before_end + _chunk(b"IEND", b""))
    return b"".join(out), layout


def _file_offset(layout: list[tuple[int, int, int]], position: int) -> int:
    """The file offset of stream byte ``position`` (``layout``: from :func:`_png`)."""
    for lo, hi, at in layout:
        if lo <= position < hi:
            return at + position - lo
    raise AssertionError(position)


def _read_all(path, name: str = "x.png", strip: int = 37) -> np.ndarray:
    """Every row, asked for in strips as the pipeline does."""
    rows = PngRows(str(path), name)
    try:
        height = rows.shape[0]
        return np.concatenate([rows[s : s + strip] for s in range(0, height, strip)])
    finally:
        rows.close()


def _inflated(prefix: bytes) -> int:
    """The oracle: how many bytes zlib inflates from the start of a stream."""
    return len(zlib.decompressobj().decompress(prefix))


def _stored(raw: bytes) -> bytes:
    """A zlib stream of stored (uncompressed) deflate blocks of :data:`STORED` bytes, so the
    stream offset of every scanline byte is known (:func:`_stored_position`)."""
    out = [b"\x78\x01"]
    for start in range(0, len(raw), STORED):
        part = raw[start : start + STORED]
        final = start + STORED >= len(raw)
        out.append(bytes([final]) + struct.pack("<HH", len(part), len(part) ^ 0xFFFF) + part)
    return b"".join(out) + struct.pack(">I", zlib.adler32(raw))


def _stored_position(j: int) -> int:
    """The stream offset of scanline byte ``j`` in :func:`_stored` (its 2-byte header, then
    blocks of 5 header bytes and :data:`STORED` data bytes)."""
    return 2 + 5 * (j // STORED + 1) + j


# -- the Adler-32 -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("adler_alone", [True, False])
def test_bit_rot_under_recomputed_crcs_is_caught_by_the_adler32(tmp_path, depth, adler_alone):
    """Stored deflate blocks: a flipped pixel byte still inflates, every CRC is right, and
    only the Adler-32 tells (the reader stopped before it, when it sat in a chunk of its own)."""
    values = _values(120, 90, "RGB", depth)
    raw = _scanlines(values)
    row_bytes = len(raw) // 120
    stream = bytearray(_stored(raw))
    target = 77 * row_bytes + 10  # a sample byte of row 77
    stream[_stored_position(target)] ^= 0x10
    assert _inflated(bytes(stream[:-4]))  # (still inflates)
    cuts = [len(stream) // 2, len(stream) - 4] if adler_alone else [len(stream) // 2]
    data, _ = _png(values, "RGB", bytes(stream), cuts)
    (tmp_path / "rot.png").write_bytes(data)
    with pytest.raises(
        ImageReadError,
        match=r"^rot.png: cannot decode PNG at row 0 \(Adler-32 checksum mismatch: the image data "
        r"of rows 0-119 is damaged\)$",
    ):
        _read_all(tmp_path / "rot.png", "rot.png")


@SETTINGS
@given(
    depth=st.sampled_from([8, 16]),
    level=st.sampled_from([0, 1, 6]),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
    adler_alone=st.booleans(),
)
@example(depth=8, level=0, where=0.5, bit=3, adler_alone=True)
@example(depth=16, level=6, where=0.3, bit=0, adler_alone=True)
def test_any_flipped_bit_under_recomputed_crcs_is_an_error_or_harmless(
    tmp_path, depth, level, where, bit, adler_alone
):
    """Anywhere in the deflate data or the Adler-32: the reader raises, or gives the right
    samples (a flip deflate cannot see and the Adler-32 does not change: none in practice)."""
    values = _values(64, 50, "RGBA", depth, seed=level)
    stream = zlib.compress(_scanlines(values), level)
    flipped = bytearray(stream)
    position = 2 + int(where * (len(stream) - 2))  # past the zlib header
    flipped[position] ^= 1 << bit
    cuts = [len(stream) // 3, len(stream) - 4] if adler_alone else [len(stream) // 3]
    data, _ = _png(values, "RGBA", bytes(flipped), cuts)  # every CRC matches the damage
    (tmp_path / "flip.png").write_bytes(data)
    try:
        got = _read_all(tmp_path / "flip.png")
    except ImageReadError as exc:
        assert str(exc).startswith("x.png: cannot decode PNG ")
    else:
        np.testing.assert_array_equal(got, values)


# -- IDAT chunk CRCs ----------------------------------------------------------------------------


@SETTINGS
@given(
    depth=st.sampled_from([8, 16]),
    size=st.integers(300, 5000),
    which=st.floats(0, 1, exclude_max=True),
)
def test_a_bad_idat_crc_is_an_error_naming_the_rows_of_its_chunk(tmp_path, depth, size, which):
    values = _values(100, 70, "RGB", depth)
    raw = _scanlines(values)
    row_bytes = len(raw) // 100
    stream = zlib.compress(raw, 6)
    cuts = list(range(size, len(stream), size))
    k = int(which * (len(cuts) + 1))
    bounds = [0, *cuts, len(stream)]
    good, _ = _png(values, "RGB", stream, cuts)
    bad = bytearray(good)
    # the CRC of chunk k: after the signature, IHDR and chunks 0..k
    end = (
        8
        + 25
        + sum(12 + hi - lo for lo, hi in zip(bounds[: k + 1], bounds[1 : k + 2], strict=False))
    )
    bad[end - 1] ^= 0x01
    (tmp_path / "crc.png").write_bytes(bytes(bad))
    first = _inflated(stream[: bounds[k]]) // row_bytes if k else 0
    last = (_inflated(stream[: bounds[k + 1]]) - 1) // row_bytes
    last = min(last, 99)
    if first >= 100:
        expected = "after row 99, its last (IDAT chunk CRC mismatch)"
    else:
        rows = f"rows {first}-{last}" if last > first else f"row {first}"
        expected = f"at row {first} (IDAT chunk CRC mismatch: the chunk holds {rows})"
    with pytest.raises(ImageReadError) as info:
        _read_all(tmp_path / "crc.png")
    assert str(info.value) == f"x.png: cannot decode PNG {expected}"


@pytest.mark.parametrize("depth", [8, 16])
def test_bit_rot_with_a_stale_crc_names_the_chunk_holding_it(tmp_path, depth):
    """The realistic case: a byte of chunk 5 changed after the file was written."""
    values = _values(100, 60, "L", depth)
    raw = _scanlines(values)
    row_bytes = len(raw) // 100
    stream = _stored(raw)
    cuts = list(range(1000, len(stream), 1000))
    rotten = bytearray(stream)
    rotten[5500] ^= 0x40  # in chunk 5: stream bytes 5000-5999
    data, _ = _png(values, "L", bytes(rotten), cuts, crcs_of=stream)
    (tmp_path / "rot.png").write_bytes(data)
    first = _inflated(stream[:5000]) // row_bytes
    last = (_inflated(stream[:6000]) - 1) // row_bytes
    with pytest.raises(
        ImageReadError,
        match=rf"^x.png: cannot decode PNG at row {first} \(IDAT chunk CRC mismatch: the chunk "
        rf"holds rows {first}-{last}\)$",
    ):
        _read_all(tmp_path / "rot.png")
    assert first <= (_inflated(stream[:5500])) // row_bytes <= last


@pytest.mark.parametrize("depth", [8, 16])
def test_a_bad_crc_on_the_last_idat_holding_only_the_adler32(tmp_path, depth):
    values = _values(40, 30, "LA", depth)
    stream = zlib.compress(_scanlines(values), 6)
    data, _ = _png(values, "LA", stream, [len(stream) - 4])
    bad = bytearray(data)
    bad[-12 - 1] ^= 0x80  # the last IDAT's CRC, just before IEND
    (tmp_path / "tail.png").write_bytes(bytes(bad))
    with pytest.raises(
        ImageReadError,
        match=r"^x.png: cannot decode PNG after row 39, its last \(IDAT chunk CRC mismatch\)$",
    ):
        _read_all(tmp_path / "tail.png")


def test_a_chunk_bigger_than_a_read_is_checked_when_its_last_piece_is_read(tmp_path):
    """An IDAT chunk of over 256 KiB (convcli writes up to 16 MiB) is inflated as it is read
    and its CRC compared after its last piece: the damage is still an error, and an inflate
    error inside a chunk that fails its CRC is reported as the CRC mismatch."""
    values = _values(200, 1000, "RGB", 8)
    raw = _scanlines(values)
    stream = _stored(raw)
    assert len(stream) > 2 * (1 << 18)
    damage = [
        # a sample of row 150, flipped
        (_stored_position(150 * 3001 + 5), 0x01, r"the chunk holds rows 0-199"),
        # a block of the invalid type 3, in row 3
        (_stored_position(10 * STORED) - 5, 0x06 ^ stream[_stored_position(10 * STORED) - 5],
         r"its data stops inflating at row 33"),
    ]  # fmt: skip
    for at, flip, says in damage:
        bad = bytearray(stream)
        bad[at] ^= flip
        data, _ = _png(values, "RGB", bytes(bad), [], crcs_of=stream)
        (tmp_path / "big.png").write_bytes(data)
        with pytest.raises(
            ImageReadError,
            match=rf"^x.png: cannot decode PNG at row 0 \(IDAT chunk CRC mismatch: {says}\)$",
        ):
            _read_all(tmp_path / "big.png")


@SETTINGS
@given(
    depth=st.sampled_from([8, 16]), block=st.integers(1, 40), chunk=st.sampled_from([None, 3000])
)
def test_corrupt_deflate_data_under_recomputed_crcs_names_the_row_it_stops_in(
    tmp_path, depth, block, chunk
):
    """Stored blocks of 10000 bytes, the header of one replaced by an invalid block type: the
    rows before it are produced, the row holding its first byte is not."""
    values = _values(150, 500, "RGB", depth)
    raw = _scanlines(values)
    row_bytes = len(raw) // 150
    block = min(block, (len(raw) - 1) // STORED)
    broken = bytearray(_stored(raw))
    broken[_stored_position(block * STORED) - 5] = 0x06  # BFINAL 0, BTYPE 3: invalid
    cuts = [] if chunk is None else list(range(chunk, len(broken), chunk))
    data, _ = _png(values, "RGB", bytes(broken), cuts)  # every CRC matches the damage
    (tmp_path / "bad.png").write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        _read_all(tmp_path / "bad.png", "bad.png")
    assert str(info.value).startswith(
        f"bad.png: cannot decode PNG at row {block * STORED // row_bytes} (corrupt data: "
    )


# -- the end of the zlib stream -----------------------------------------------------------------


def test_the_zlib_stream_must_end_with_the_image_and_nothing_after_it(tmp_path):
    values = _values(30, 20, "RGB", 8)
    raw = _scanlines(values)
    cases = {
        "trailing.png": (
            zlib.compress(raw) + b"more",
            "data after the end of the compressed image data",
        ),
    }
    c = zlib.compressobj()
    cases["unended.png"] = (
        c.compress(raw) + c.flush(zlib.Z_SYNC_FLUSH),
        "the compressed image data does not end",
    )
    for name, (stream, why) in cases.items():
        data, _ = _png(values, "RGB", stream, [len(stream) // 2])
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError) as info:
            _read_all(tmp_path / name, name)
        assert str(info.value) == f"{name}: cannot decode PNG after row 29, its last ({why})"


def test_image_data_past_the_last_row_is_ignored_but_still_checked(tmp_path, monkeypatch):
    """libpng ignores it ('Too much image data', a warning); its Adler-32 still counts, and
    over 256 MiB of it is refused (a deflate bomb behind a small image; 1 MiB here)."""
    values = _values(30, 20, "RGB", 16)
    raw = _scanlines(values)
    stream = _stored(raw + bytes(5000))
    data, _ = _png(values, "RGB", stream, [len(stream) // 2])
    (tmp_path / "surplus.png").write_bytes(data)
    np.testing.assert_array_equal(_read_all(tmp_path / "surplus.png"), values)
    rotten = bytearray(stream)
    rotten[_stored_position(len(raw) + 10)] ^= 0x01  # past the last row: only the Adler-32 tells
    data, _ = _png(values, "RGB", bytes(rotten), [len(stream) // 2])
    (tmp_path / "surplus.png").write_bytes(data)
    with pytest.raises(
        ImageReadError,
        match=r"^x.png: cannot decode PNG at row 0 \(Adler-32 checksum mismatch: the image data "
        r"of rows 0-29 is damaged\)$",
    ):
        _read_all(tmp_path / "surplus.png")
    monkeypatch.setattr(png_codec, "_SURPLUS", 1 << 20)
    bomb = zlib.compress(raw + bytes((1 << 20) + 1), 9)
    data, _ = _png(values, "RGB", bomb, [])
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(
        ImageReadError,
        match=r"^x.png: cannot decode PNG after row 29, its last \(over 1 MiB of image data "
        r"past the last row\)$",
    ):
        _read_all(tmp_path / "bomb.png")


def test_a_valid_png_whose_last_block_is_small_is_read(tmp_path):
    """ISA-L may take all the input while still holding inflated bytes: the reader asks for
    them before saying the data ran out (it refused this valid file: 'image data cut short')."""
    from PIL import Image as PILImage

    width = 100
    height = (1 << 20) // (3 * width + 1) + 1  # one row past the first 1 MiB block
    values = np.zeros((height, width, 3), np.uint8)
    values[:, :, 0] = (np.arange(width) % 7)[None, :]
    PILImage.fromarray(values).save(tmp_path / "ok.png", compress_level=6)
    np.testing.assert_array_equal(_read_all(tmp_path / "ok.png", strip=500), values)


# -- critical and ancillary chunks --------------------------------------------------------------


def test_a_bad_ancillary_crc_is_a_warning_and_the_chunk_is_ignored(tmp_path):
    """libpng's default: an ancillary chunk whose CRC does not match is ignored with a
    warning ('tEXt: CRC error'); the image is read."""
    values = _values(20, 10, "RGB", 8)
    stream = zlib.compress(_scanlines(values))
    exif = b"MM\x00\x2a\x00\x00\x00\x08\x00\x00"  # an empty big-endian TIFF header
    text = _chunk(b"tEXt", b"Comment\x00hello", crc=1234)
    for exif_crc, kept in ((None, True), (0xDEADBEEF, False)):
        data, _ = _png(values, "RGB", stream, [], before_end=text + _chunk(b"eXIf", exif, exif_crc))
        (tmp_path / "anc.png").write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = PngRows(str(tmp_path / "anc.png"), "anc.png")
        assert [str(w.message) for w in caught] == [
            f"PNG {name} chunk CRC mismatch: chunk ignored"
            for name in (["tEXt"] if kept else ["tEXt", "eXIf"])
        ]
        try:
            assert rows.damaged == (["tEXt"] if kept else ["tEXt", "eXIf"])
            assert rows.exif == (b"Exif\x00\x00" + exif if kept else None)
            np.testing.assert_array_equal(rows[0:20], values)
        finally:
            rows.close()


@needs_native
def test_a_bad_ancillary_crc_becomes_a_note_of_the_read(tmp_path):
    values = _values(20, 10, "RGB", 8)
    stream = zlib.compress(_scanlines(values))
    text = _chunk(b"tEXt", b"Comment\x00hello", crc=1234)
    data, _ = _png(values, "RGB", stream, [], before_end=text)
    (tmp_path / "anc.png").write_bytes(data)
    with read_samples(tmp_path / "anc.png") as stored:
        assert type(stored.samples).__name__ == "PngRows"
        np.testing.assert_array_equal(stored.samples[0:20], values)
        assert "PNG tEXt chunk CRC mismatch: chunk ignored" in stored.meta.notes


@needs_native
def test_bad_ancillary_crcs_before_the_image_data_are_ignored_with_their_metadata(
    tmp_path, monkeypatch
):
    # Pillow refuses such a file outright ("not an image file" it was): the row reader
    # warns and ignores the chunks, as libpng does, and what they held is not kept
    values = _values(20, 10, "RGB", 8)
    data, _ = _png(values, "RGB", zlib.compress(_scanlines(values)), [])
    icc = _chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 200), crc=7)
    phys = _chunk(b"pHYs", struct.pack(">IIB", 11811, 11811, 1), crc=8)
    text = _chunk(b"tEXt", b"Comment\x00hello", crc=9)
    (tmp_path / "anc.png").write_bytes(data[:33] + icc + phys + text + data[33:])
    with read_samples(tmp_path / "anc.png") as stored:
        assert type(stored.samples).__name__ == "PngRows"
        np.testing.assert_array_equal(stored.samples[0:20], values)
        assert stored.meta.icc_profile is None and stored.meta.dpi is None
        for name in ("iCCP", "pHYs", "tEXt"):
            assert f"PNG {name} chunk CRC mismatch: chunk ignored" in stored.meta.notes
    with read_samples(tmp_path / "anc.png", lazy=False) as whole:  # the same reader, whole
        np.testing.assert_array_equal(whole.samples, values)
        assert whole.meta.icc_profile is None and whole.meta.dpi is None
    monkeypatch.setattr(native, "AVAILABLE", False)  # no row reader: Pillow, which refuses
    with pytest.raises(ImageReadError, match=r"anc.png: cannot decode PNG \(a damaged chunk"):
        read_samples(tmp_path / "anc.png")


@pytest.mark.parametrize("ctype", [b"IEND", b"IHDR", b"PLTE"])
def test_a_bad_crc_on_a_critical_chunk_is_an_error(tmp_path, ctype):
    values = _values(20, 10, "RGB", 8)
    stream = zlib.compress(_scanlines(values))
    palette = _chunk(b"PLTE", bytes(range(30)))  # a suggested palette, allowed in RGB
    data, _ = _png(values, "RGB", stream, [], before_end=palette)
    at = data.index(ctype) + 4 + (len(palette) - 12 if ctype == b"PLTE" else 0)
    at += 13 if ctype == b"IHDR" else 0
    bad = bytearray(data)
    bad[at] ^= 0x01  # the first byte of its CRC
    (tmp_path / "crit.png").write_bytes(bytes(bad))
    with pytest.raises(
        ImageReadError,
        match=rf"^crit.png: cannot decode PNG \({ctype.decode()} chunk CRC mismatch\)$",
    ):
        _read_all(tmp_path / "crit.png", "crit.png")


# -- the row named ------------------------------------------------------------------------------


@SETTINGS
@given(depth=st.sampled_from([8, 16]), row=st.integers(0, 299), ftype=st.integers(5, 255))
@example(depth=8, row=200, ftype=7)
def test_a_bad_filter_type_names_its_row(tmp_path, depth, row, ftype):
    """Rows are inflated in blocks of about 1 MiB (here 87 rows of 12001 bytes at 16 bits,
    174 at 8): the row named is the row itself, not its block's first."""
    values = _values(300, 2000, "RGB", depth)
    stream = zlib.compress(_scanlines(values, {row: ftype}), 1)
    data, _ = _png(values, "RGB", stream, list(range(1 << 16, len(stream), 1 << 16)))
    (tmp_path / "filter.png").write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        _read_all(tmp_path / "filter.png", strip=64)
    assert str(info.value) == (
        f"x.png: cannot decode PNG at row {row} (invalid PNG filter type {ftype})"
    )


@SETTINGS
@given(
    depth=st.sampled_from([8, 16]),
    row=st.integers(0, 149),
    into=st.floats(0, 1, exclude_max=True),
    chunk=st.sampled_from([None, 997, 20000]),
)
@example(depth=8, row=120, into=0.5, chunk=None)
@example(depth=16, row=120, into=0.5, chunk=997)
def test_a_file_cut_inside_a_row_names_that_row(tmp_path, depth, row, into, chunk):
    """Stored deflate blocks, so the stream offset of every scanline byte is known: the file
    ends just before byte ``into`` of row ``row``; one IDAT chunk or many."""
    values = _values(150, 400, "RGB", depth)
    raw = _scanlines(values)
    row_bytes = len(raw) // 150
    stream = _stored(raw)
    j = row * row_bytes + int(into * row_bytes)  # the first scanline byte missing
    keep = _stored_position(j)
    assert _inflated(stream[:keep]) == j  # (the construction, checked by zlib)
    cuts = [] if chunk is None else list(range(chunk, len(stream), chunk))
    data, layout = _png(values, "RGB", stream, cuts)
    (tmp_path / "cut.png").write_bytes(data[: _file_offset(layout, keep)])
    with pytest.raises(ImageReadError) as info:
        _read_all(tmp_path / "cut.png", "cut.png")
    assert str(info.value) == f"cut.png: cannot decode PNG at row {row} (file cut short)"


@SETTINGS
@given(
    depth=st.sampled_from([8, 16]),
    where=st.floats(0, 1, exclude_max=True),
    chunk=st.sampled_from([None, 4096]),
)
def test_a_compressed_file_cut_anywhere_names_the_row_zlib_runs_out_in(
    tmp_path, depth, where, chunk
):
    values = _values(200, 150, "RGBA", depth, seed=3)
    raw = _scanlines(values)
    row_bytes = len(raw) // 200
    stream = zlib.compress(raw, 6)
    keep = 2 + int(where * (len(stream) - 2))
    cuts = [] if chunk is None else list(range(chunk, len(stream), chunk))
    data, layout = _png(values, "RGBA", stream, cuts)
    (tmp_path / "cut.png").write_bytes(data[: _file_offset(layout, keep)])
    row = _inflated(stream[:keep]) // row_bytes
    where_text = "after row 199, its last" if row >= 200 else f"at row {row}"
    with pytest.raises(ImageReadError) as info:
        _read_all(tmp_path / "cut.png", "cut.png")
    assert str(info.value) == f"cut.png: cannot decode PNG {where_text} (file cut short)"


@pytest.mark.parametrize("depth", [8, 16])
def test_a_file_cut_in_the_adler32_is_an_error(tmp_path, depth):
    values = _values(50, 40, "L", depth)
    stream = zlib.compress(_scanlines(values), 6)
    for cuts in ([], [len(stream) - 4]):
        data, layout = _png(values, "L", stream, cuts)
        (tmp_path / "cut.png").write_bytes(data[: _file_offset(layout, len(stream) - 2)])
        with pytest.raises(
            ImageReadError,
            match=r"^cut.png: cannot decode PNG after row 49, its last \(file cut short\)$",
        ):
            _read_all(tmp_path / "cut.png", "cut.png")


# -- nothing written ----------------------------------------------------------------------------


def _adler_rot(tmp_path, name: str = "in.png"):
    """An RGB PNG whose damage (a sample of its last row) only the Adler-32 tells, alone in
    the last IDAT chunk: found after the last row is produced."""
    values = _values(300, 200, "RGB", 8, seed=9)
    raw = _scanlines(values)
    stream = bytearray(_stored(raw))
    stream[_stored_position(len(raw) - 7)] ^= 0x04  # a sample of the last row
    data, _ = _png(values, "RGB", bytes(stream), [len(stream) // 2, len(stream) - 4])
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


@needs_native
@pytest.mark.parametrize("existing", [False, True])
def test_filter_file_writes_nothing_when_the_damage_is_found_at_the_end(tmp_path, existing):
    src = _adler_rot(tmp_path)
    out = tmp_path / "out.png"
    if existing:
        out.write_bytes(b"old")
    with pytest.raises(ImageReadError, match=r"in.png: cannot decode PNG at row 0 \(Adler-32 "):
        filter_file(src, out, [builtin_kernel("box")], strip_rows=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["in.png", "out.png"] if existing else ["in.png"]
    )
    if existing:
        assert out.read_bytes() == b"old"


@needs_native
def test_the_command_says_it_in_one_line_and_exits_1(tmp_path):
    src = _adler_rot(tmp_path)
    result = CliRunner().invoke(
        main, ["apply", str(src), "-k", "sharpen", "-o", str(tmp_path / "o.png")]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {src}: cannot decode PNG at row 0 (Adler-32 checksum mismatch: the image data "
        "of rows 0-299 is damaged)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_a_huge_declared_width_is_refused_by_the_pixel_limit_before_any_allocation(tmp_path):
    # the row reader sizes a row buffer from the header: a 69-byte file declaring a row of
    # 34 GB gave "out of memory" (or a raw MemoryError from the library)
    ihdr = struct.pack(">IIBBBBB", 0xFFFFFFF0, 1, 16, 6, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b""))
    (tmp_path / "wide.png").write_bytes(data + _chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=r"wide.png: image too large \(4294967280x1"):
        read_samples(tmp_path / "wide.png")


@needs_native
@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"\x78\x9d", "bad check bits"),
        (b"\x88\x98", "a 64 KiB window"),
        (b"\x78\xbb", "a preset dictionary"),
        (b"\x79\x9c", "not deflate"),
    ],  # fmt: skip
)
def test_an_invalid_zlib_header_is_named_as_such(tmp_path, head, why):
    # ISA-L took a 64 KiB window, and called a bad check a checksum mismatch; zlib and
    # libpng refuse both as a bad header
    values = _values(20, 10, "RGB", 8)
    stream = head + zlib.compress(_scanlines(values))[2:]
    data, _ = _png(values, "RGB", stream, [1])  # (the header split over two chunks)
    (tmp_path / "z.png").write_bytes(data)
    with pytest.raises(ImageReadError, match=r"z.png: cannot decode PNG at row 0 \(invalid zlib"):
        with read_samples(tmp_path / "z.png") as stored:
            stored.samples[0:20]
