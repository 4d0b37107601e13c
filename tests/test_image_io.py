"""Image reading and writing: modes, formats, depth, metadata, errors, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, ImageCms, PngImagePlugin
from PIL import Image as PILImage

from convcli import native
from convcli.errors import ImageReadError, ImageWriteError, UsageError
from convcli.image_io import (
    Image,
    check_output,
    from_array,
    read_image,
    to_depth,
    write_image,
)

#: Tests of what only the C extension does (fused strips, PNG read row by row, its
#: messages); the NumPy fallback (CONVCLI_NATIVE=0, no compiler) decodes PNGs whole.
needs_native = pytest.mark.skipif(not native.AVAILABLE, reason="the C extension is not in use")

RNG = np.random.default_rng(42)
GREY = (RNG.random((5, 7)) * 255).astype(np.uint8)  # odd sizes catch transposes
RGB = (RNG.random((5, 7, 3)) * 255).astype(np.uint8)
RGBA = (RNG.random((5, 7, 4)) * 255).astype(np.uint8)


def save(tmp_path, pil, name, **kw):
    path = tmp_path / name
    pil.save(path, **kw)
    return path


@pytest.mark.parametrize(
    ("make", "bands", "depth", "expected"),
    [
        (lambda: PILImage.fromarray(GREY), "L", "8", GREY[..., None] / 255),
        (lambda: PILImage.fromarray(RGB), "RGB", "8", RGB / 255),
        (lambda: PILImage.fromarray(RGBA), "RGBA", "8", RGBA / 255),
        (lambda: PILImage.fromarray(RGBA[..., :2]), "LA", "8", RGBA[..., :2] / 255),
        (lambda: PILImage.fromarray(GREY > 128), "L", "8", (GREY > 128)[..., None] * 1.0),
        (
            lambda: PILImage.fromarray(GREY.astype(np.uint16) * 257),
            "L",
            "16",
            GREY[..., None] / 255,
        ),
    ],
)
def test_lossless_png_modes(tmp_path, make, bands, depth, expected):
    path = save(tmp_path, make(), "a.png")
    im = read_image(path)
    assert im.bands == bands and im.depth == depth
    assert im.pixels.dtype == np.float32 and im.pixels.shape == expected.shape
    np.testing.assert_allclose(im.pixels, expected, atol=1e-7)
    out = tmp_path / "b.png"
    write_image(im, out)
    back = read_image(out)
    assert back.bands == bands and back.depth == depth
    np.testing.assert_array_equal(back.pixels, im.pixels)


def test_palette_with_and_without_transparency(tmp_path):
    p = PILImage.fromarray(RGB).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=16)
    im = read_image(save(tmp_path, p, "p.png"))
    assert im.bands == "RGB" and im.meta.source_mode == "P"
    np.testing.assert_allclose(im.pixels, np.asarray(p.convert("RGB")) / 255, atol=1e-7)
    p.info["transparency"] = 0
    im = read_image(save(tmp_path, p, "pt.png", transparency=0))
    assert im.bands == "RGBA"
    assert set(np.unique(im.pixels[..., 3])) <= {0.0, 1.0} and im.pixels[..., 3].min() == 0.0


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = PILImage.fromarray(RGB).convert("CMYK")
    im = read_image(save(tmp_path, cmyk, "c.tif"))
    assert im.bands == "RGB" and im.meta.source_mode == "CMYK"
    np.testing.assert_allclose(im.pixels, np.asarray(cmyk.convert("RGB")) / 255, atol=1e-7)


def test_mode_i_and_f(tmp_path):
    ints = PILImage.fromarray((GREY.astype(np.int32) * 200), "I")
    im = read_image(save(tmp_path, ints, "i16.tif"))
    assert im.depth == "16"
    np.testing.assert_allclose(im.pixels[..., 0], GREY.astype(np.int64) * 200 / 65535, atol=1e-7)
    big = PILImage.fromarray(GREY.astype(np.int32) * 1000 - 5000, "I")
    im = read_image(save(tmp_path, big, "i.tif"))
    assert im.depth == "float" and "outside 0..65535" in im.meta.notes[0]
    floats = (RNG.random((4, 6)) * 10 - 5).astype(np.float32)
    im = read_image(save(tmp_path, PILImage.fromarray(floats), "f.tif"))
    assert im.depth == "float" and im.bands == "L"
    np.testing.assert_array_equal(im.pixels[..., 0], floats)
    write_image(im, tmp_path / "g.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "g.tif").pixels[..., 0], floats)


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp", ".bmp"])
def test_lossless_formats_round_trip_rgb(tmp_path, ext):
    im = from_array(RGB / 255, depth="8")
    write_image(im, tmp_path / f"x{ext}")
    np.testing.assert_array_equal(read_image(tmp_path / f"x{ext}").pixels, im.pixels)


def test_jpeg_round_trip_is_close_and_quality_matters(tmp_path):
    smooth = np.linspace(0, 1, 64 * 48 * 3, dtype=np.float32).reshape(48, 64, 3)
    im = from_array(smooth, depth="8")
    write_image(im, tmp_path / "hi.jpg", quality=95)
    write_image(im, tmp_path / "lo.jpg", quality=10)
    hi = read_image(tmp_path / "hi.jpg").pixels
    lo = read_image(tmp_path / "lo.jpg").pixels
    assert np.abs(hi - smooth).mean() < np.abs(lo - smooth).mean()
    assert np.abs(hi - smooth).max() < 0.05


def test_gif_first_frame_with_a_note(tmp_path):
    frames = [PILImage.fromarray(GREY), PILImage.fromarray(255 - GREY)]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    im = read_image(path)
    assert im.meta.notes == ["GIF has 2 frames; using the first"]
    np.testing.assert_allclose(im.pixels[..., 0], GREY / 255, atol=1e-7)


def test_exif_orientation_applied_and_reset(tmp_path):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    path = save(tmp_path, PILImage.fromarray(RGB), "o.png", exif=exif.tobytes())
    im = read_image(path)
    np.testing.assert_allclose(im.pixels, np.rot90(RGB, -1) / 255, atol=1e-7)
    write_image(im, tmp_path / "o2.png")
    with PILImage.open(tmp_path / "o2.png") as out:
        assert out.getexif().get(0x0112) == 1
        assert out.size == (5, 7)


def test_icc_and_dpi_are_kept(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name in ("m.png", "m.jpg", "m.tif", "m.webp"):
        src = save(
            tmp_path, PILImage.fromarray(RGB), "src_" + name, icc_profile=icc, dpi=(300, 300)
        )
        im = read_image(src)
        assert im.meta.icc_profile == icc
        write_image(im, tmp_path / name)
        with PILImage.open(tmp_path / name) as out:
            assert out.info.get("icc_profile") == icc
            if name != "m.webp":
                assert tuple(round(v) for v in out.info["dpi"]) == (300, 300)


def test_rounding_is_to_nearest_and_clipped():
    values = np.array([-0.2, 0.0, 1.4 / 255, 1.6 / 255, 254.5 / 255 - 1e-6, 1.0, 1.7])
    assert to_depth(values, "8").tolist() == [0, 0, 1, 2, 254, 255, 255]
    assert to_depth(np.array([0.5 / 65535 + 1e-9, 1.0]), "16").tolist() == [1, 65535]
    assert to_depth(values, "float").dtype == np.float32


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_8bit_samples_read_as_k_over_255_exactly(tmp_path, mode):
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    if mode == "P":
        pil = PILImage.fromarray(ramp, "L").convert("P")  # a grey palette of 256 entries
    else:
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        pil = PILImage.fromarray(np.dstack([ramp] * channels).squeeze(), mode)
    path = save(tmp_path, pil, "ramp.png")
    im = read_image(path)
    expected = np.arange(256, dtype=np.float32).reshape(16, 16) / np.float32(255)
    assert im.pixels.dtype == np.float32
    for c in range(im.channels):
        assert np.array_equal(im.pixels[:, :, c], expected)
    write_image(im, tmp_path / "back.png")
    with PILImage.open(tmp_path / "back.png") as back:
        assert np.array_equal(np.asarray(back.convert("L")), ramp)  # and back, exactly


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from([(0,), (1,), (3, 5), (70_000,), (300, 257, 3)]),
    depth=st.sampled_from(["8", "16"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_blocked_rounding_matches_the_whole_array_formula(shape, depth, seed):
    # to_depth works block by block; the result must be the plain formula's, ties
    # (k + 0.5) / top and out-of-range values included, and keep the shape.
    rng = np.random.default_rng(seed)
    top = 255 if depth == "8" else 65535
    values = rng.random(shape, dtype=np.float32) * 1.4 - 0.2
    ties = (rng.integers(0, top, shape) + 0.5) / top
    values = np.where(rng.random(shape) < 0.2, ties, values).astype(np.float32)
    expected = np.rint(np.clip(values.astype(np.float64), 0, 1) * top)
    got = to_depth(values, depth)
    assert got.shape == values.shape
    assert got.dtype == (np.uint8 if depth == "8" else np.uint16)
    assert np.array_equal(got, expected)


def test_depth_override(tmp_path):
    im = from_array(GREY / 255, depth="8")
    write_image(im, tmp_path / "d16.png", depth="16")
    back = read_image(tmp_path / "d16.png")
    assert back.depth == "16"
    np.testing.assert_allclose(back.pixels, im.pixels, atol=0.5 / 65535)
    write_image(im, tmp_path / "f.tif", depth="float")
    assert read_image(tmp_path / "f.tif").depth == "float"


# -- 16-bit colour PNG (decoded and encoded by convcli) ----------------------------------------


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filtered_rows(values: np.ndarray, filters: list[int]) -> bytes:
    """Rows of a (sub-)image, each filtered with the given type in turn and prefixed by it."""
    h, w, c = values.shape
    bpp = 2 * c
    rows = [values[y].astype(">u2").tobytes() for y in range(h)]
    out = b""
    for y, row in enumerate(rows):
        prev = rows[y - 1] if y else bytes(len(row))
        ftype = filters[y % len(filters)]
        enc = bytearray()
        for x, v in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            cc = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, cc)][ftype]
            enc.append((v - pred) & 0xFF)
        out += bytes([ftype]) + bytes(enc)
    return out


def _chunk(ctype: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


ADAM7 = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
]


def _png16(
    values: np.ndarray,
    colour: int,
    filters: list[int],
    *,
    interlace: bool = False,
    chunks: bytes = b"",
    idat: bytes | None = None,
) -> bytes:
    """A reference PNG encoder (slow, test only) using the given filter type per row.

    ``interlace``: Adam7, each pass a sub-image filtered on its own; ``chunks`` go
    before IDAT; ``idat`` replaces the compressed data.
    """
    h, w, c = values.shape
    if interlace:
        passes = [values[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7]
        raw = b"".join(_filtered_rows(p, filters) for p in passes if p.size)
    else:
        raw = _filtered_rows(values, filters)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + chunks
        + _chunk(b"IDAT", zlib.compress(raw) if idat is None else idat)
        + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("colour", "channels", "bands"), [(2, 3, "RGB"), (6, 4, "RGBA"), (4, 2, "LA")]
)
def test_16bit_colour_png_every_filter_type(tmp_path, colour, channels, bands):
    values = RNG.integers(0, 65536, (6, 5, channels)).astype(np.uint16)
    path = tmp_path / "c16.png"
    path.write_bytes(_png16(values, colour, [0, 1, 2, 3, 4, 4]))
    im = read_image(path)
    assert im.bands == bands and im.depth == "16"
    np.testing.assert_array_equal(np.rint(im.pixels * 65535).astype(np.uint16), values)
    write_image(im, tmp_path / "again.png")
    np.testing.assert_array_equal(read_image(tmp_path / "again.png").pixels, im.pixels)


@pytest.mark.parametrize(("colour", "channels"), [(2, 3), (6, 4), (4, 2)])
@pytest.mark.parametrize("orientation", [3, 6, 7])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_colour_png_exif_is_applied_and_kept(tmp_path, colour, channels, orientation,
                                                  interlace):  # fmt: skip
    from convcli.image_io import _UPRIGHT, read_samples

    values = RNG.integers(0, 65536, (5, 8, channels)).astype(np.uint16)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x013B] = "Someone"  # Artist
    chunks = _chunk(b"eXIf", exif.tobytes())
    path = tmp_path / "e16.png"
    path.write_bytes(_png16(values, colour, [0, 1, 2], interlace=interlace, chunks=chunks))
    stored = read_samples(path)
    upright = _UPRIGHT[orientation](values)
    assert stored.depth == "16" and stored.samples.shape == upright.shape
    np.testing.assert_array_equal(stored.samples, upright)
    kept = PILImage.Exif()
    kept.load(stored.meta.exif)
    assert kept[0x0112] == 1 and kept[0x013B] == "Someone"
    write_image(read_image(path), tmp_path / "out.png")
    with PILImage.open(tmp_path / "out.png") as out:
        assert out.size == (upright.shape[1], upright.shape[0])
        assert out.getexif()[0x013B] == "Someone"


@needs_native
def test_16bit_colour_png_bad_filter_is_a_read_error(tmp_path):
    data = bytearray(_png16(np.zeros((2, 2, 3), np.uint16), 2, [0]))
    raw = zlib.decompress(bytes(data[41 : 41 + struct.unpack(">I", data[33:37])[0]]))
    bad = bytes([7]) + raw[1:]
    good = _png16(np.zeros((2, 2, 3), np.uint16), 2, [0])
    idat_start = good.index(b"IDAT") - 4
    comp = zlib.compress(bad)
    idat = struct.pack(">I", len(comp)) + b"IDAT" + comp
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + comp) & 0xFFFFFFFF)
    path = tmp_path / "bad.png"
    path.write_bytes(good[:idat_start] + idat + good[good.index(b"IEND") - 4 :])
    with pytest.raises(
        ImageReadError, match="bad.png: cannot decode (image|PNG at row 0) \\(invalid PNG filter"
    ):
        read_image(path)


@pytest.mark.parametrize(
    ("width", "height"),
    [(13, 11), (1, 1), (3, 2), (8, 8), (80, 64)],
    ids=["13x11", "1x1", "3x2", "8x8", "80x64"],  # (80x64: libpng's interlace warning, dropped)
)
@pytest.mark.parametrize(
    ("colour", "channels", "bands"), [(2, 3, "RGB"), (6, 4, "RGBA"), (4, 2, "LA")]
)
def test_interlaced_16bit_colour_png_is_read_at_full_depth(
    tmp_path, width, height, colour, channels, bands
):
    values = RNG.integers(0, 65536, (height, width, channels)).astype(np.uint16)
    path = tmp_path / "adam7.png"
    path.write_bytes(_png16(values, colour, [0, 1, 2, 3, 4], interlace=True))
    with PILImage.open(path) as pil:  # the reference encoder, checked by Pillow (at 8 bits)
        eight = np.asarray(pil)
        if bands == "LA":  # Pillow gives 16-bit grey + alpha as RGBA
            assert pil.mode == "RGBA"
            eight = eight[..., [0, 3]]
        np.testing.assert_array_equal(eight.reshape(values.shape), values >> 8)
    im = read_image(path)
    assert im.bands == bands and im.depth == "16" and im.meta.notes == []
    np.testing.assert_array_equal(np.rint(im.pixels * 65535).astype(np.uint16), values)


def _tiff16(values: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF (Pillow cannot write one)."""
    h, w, c = values.shape
    pixels = values.astype("<u2").tobytes()
    bits = struct.pack("<3H", 16, 16, 16)
    data_at = 8 + len(bits)
    ifd_at = data_at + len(pixels)
    short, long_ = 3, 4
    entries = [
        (256, short, 1, w),
        (257, short, 1, h),
        (258, short, 3, 8),  # BitsPerSample: three values, stored at offset 8
        (259, short, 1, 1),
        (262, short, 1, 2),
        (273, long_, 1, data_at),
        (277, short, 1, c),
        (278, short, 1, h),
        (279, long_, 1, len(pixels)),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count)
        ifd += (
            struct.pack("<HH", value, 0)
            if kind == short and count == 1
            else struct.pack("<I", value)
        )
    return b"II*\x00" + struct.pack("<I", ifd_at) + bits + pixels + ifd + struct.pack("<I", 0)


def test_16bit_rgb_tiff_is_read_at_full_depth_and_written_back(tmp_path):
    values = RNG.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    path = tmp_path / "rgb16.tif"
    path.write_bytes(_tiff16(values))
    im = read_image(path)  # Pillow would give 8 bits; the strip reader gives all 16
    assert (im.bands, im.depth) == ("RGB", "16")
    np.testing.assert_array_equal(to_depth(im.pixels, "16"), values)
    assert im.meta.notes == []
    write_image(im, tmp_path / "back.tif")
    back = read_image(tmp_path / "back.tif")
    assert (back.bands, back.depth) == ("RGB", "16")
    np.testing.assert_array_equal(to_depth(back.pixels, "16"), values)
    assert read_image(save(tmp_path, PILImage.fromarray(RGB), "rgb8.tif")).meta.notes == []


# -- decompression bombs -------------------------------------------------------------------------


def _png8(tmp_path):
    return save(tmp_path, PILImage.fromarray(RGB), "p8.png")  # 7 x 5, decoded by Pillow


def _png16_file(tmp_path):
    path = tmp_path / "p16.png"
    path.write_bytes(_png16(RGB.astype(np.uint16) * 257, 2, [0]))  # 7 x 5, decoded by convcli
    return path


@pytest.mark.parametrize("make", [_png8, _png16_file], ids=["pillow", "convcli"])
def test_pixel_limit_is_a_refusal_for_every_decoder(tmp_path, monkeypatch, make):
    path = make(tmp_path)  # 7x5 = 35 pixels
    # the default limit is Pillow's MAX_IMAGE_PIXELS, and one pixel above it is refused
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 34)
    with pytest.raises(
        ImageReadError,
        match=r"p(8|16)\.png: image too large \(7x5 = 35 pixels, above the limit of 34; "
        r"--max-pixels raises it, 0 for none\)$",
    ):
        read_image(path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 35)
    im = read_image(path)
    assert im.width == 7 and im.meta.notes == []  # at the limit: read, and no warning
    np.testing.assert_allclose(im.pixels, RGB / 255, atol=1e-7)
    # an explicit limit overrides the default either way; 0 is none
    with pytest.raises(ImageReadError, match="above the limit of 20;"):
        read_image(path, max_pixels=20)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10)
    assert read_image(path, max_pixels=35).height == 5
    assert read_image(path, max_pixels=0).height == 5
    assert PILImage.MAX_IMAGE_PIXELS == 10  # Pillow's own setting is left as it was


def test_16bit_png_decompresses_no_more_than_its_header_says(tmp_path):
    values = RNG.integers(0, 65536, (4, 4, 3)).astype(np.uint16)
    squeeze = zlib.compressobj(9)
    # the real rows, then 64 MB of zeros the header has no room for
    bomb = squeeze.compress(_filtered_rows(values, [0]))
    for _ in range(64):
        bomb += squeeze.compress(bytes(1 << 20))
    bomb += squeeze.flush()
    path = tmp_path / "bomb.png"
    path.write_bytes(_png16(values, 2, [0], idat=bomb))
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        im = read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(np.rint(im.pixels * 65535).astype(np.uint16), values)
    assert peak < 4 << 20


def test_16bit_png_oversized_icc_profile_is_ignored_with_a_note(tmp_path):
    big = zlib.compress(bytes(PngImagePlugin.MAX_TEXT_CHUNK + 1))
    iccp = _chunk(b"iCCP", b"icc\x00\x00" + big)
    path = tmp_path / "icc.png"
    path.write_bytes(_png16(np.zeros((2, 2, 3), np.uint16), 2, [0], chunks=iccp))
    im = read_image(path)
    assert im.meta.icc_profile is None
    assert im.meta.notes == [
        f"ICC profile ignored: larger than {PngImagePlugin.MAX_TEXT_CHUNK} bytes"
    ]


# -- tRNS colour keys ----------------------------------------------------------------------------


def _grey4_png(tmp_path):
    """4-bit grey (hand-made: Pillow cannot write it), key 15 = white."""
    levels = np.array([[0, 5, 15, 15], [15, 3, 0, 15]], np.uint8)
    rows = b"".join(
        b"\x00" + bytes((int(r[0]) << 4 | int(r[1]), int(r[2]) << 4 | int(r[3]))) for r in levels
    )
    ihdr = struct.pack(">IIBBBBB", 4, 2, 4, 0, 0, 0, 0)
    path = tmp_path / "g4.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"tRNS", struct.pack(">H", 15))
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )
    return path, levels[..., None] * 17, levels != 15


def _grey8_png(tmp_path):
    key = int(GREY[1, 2])
    pil = PILImage.fromarray(GREY)
    return save(tmp_path, pil, "g8.png", transparency=key), GREY[..., None], GREY != key


def _grey16_png(tmp_path):
    values = GREY.astype(np.uint16) * 257 + 3
    key = int(values[4, 6])
    path = save(tmp_path, PILImage.fromarray(values), "g16.png", transparency=key)
    return path, values[..., None], values != key


def _rgb8_png(tmp_path):
    rgb = RGB.copy()
    rgb[0, :3] = rgb[2, 5] = (10, 20, 30)
    path = save(tmp_path, PILImage.fromarray(rgb), "rgb8.png", transparency=(10, 20, 30))
    return path, rgb, np.any(rgb != (10, 20, 30), axis=2)


def _rgb16_png(tmp_path):
    rgb = RGB.astype(np.uint16) * 257
    rgb[1, 1] = rgb[3, 6] = (1000, 2000, 65535)
    trns = _chunk(b"tRNS", struct.pack(">3H", 1000, 2000, 65535))
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png16(rgb, 2, [1, 4], chunks=trns))
    return path, rgb, np.any(rgb != (1000, 2000, 65535), axis=2)


@pytest.mark.parametrize(
    ("make", "bands", "depth"),
    [
        (_grey4_png, "LA", "8"),
        (_grey8_png, "LA", "8"),
        (_grey16_png, "LA", "16"),
        (_rgb8_png, "RGBA", "8"),
        (_rgb16_png, "RGBA", "16"),
    ],
    ids=["grey4", "grey8", "grey16", "rgb8", "rgb16"],
)
def test_png_colour_key_becomes_alpha(tmp_path, make, bands, depth):
    path, colour, opaque = make(tmp_path)
    assert not opaque.all() and opaque.any()
    top = 255 if depth == "8" else 65535
    im = read_image(path)
    assert (im.bands, im.depth) == (bands, depth)
    np.testing.assert_allclose(im.pixels[..., :-1], colour / top, atol=1e-7)
    np.testing.assert_array_equal(im.pixels[..., -1], opaque.astype(np.float32))
    write_image(im, tmp_path / "out.png")
    back = read_image(tmp_path / "out.png")
    assert (back.bands, back.depth) == (bands, depth)
    np.testing.assert_array_equal(back.pixels, im.pixels)


# -- metadata written back -----------------------------------------------------------------------


def _float_tiff(tmp_path):
    floats = RNG.random((5, 7)).astype(np.float32)
    pil = PILImage.fromarray(floats)
    path = save(tmp_path, pil, "f.tif", tiffinfo={271: "Maker", 315: "Ann"})
    return path, "8", "L", np.rint(floats * 255).astype(np.uint8)


def _int32_tiff(tmp_path):
    ints = GREY.astype(np.int32) * 250  # in 0..65535: read as 16-bit
    path = save(tmp_path, PILImage.fromarray(ints, "I"), "i.tif", tiffinfo={271: "Maker"})
    return path, "16", "I;16", ints.astype(np.uint16)


def _cmyk_tiff(tmp_path):
    cmyk = PILImage.fromarray(RGB).convert("CMYK")
    path = save(tmp_path, cmyk, "c.tif", tiffinfo={271: "Maker"})
    return path, "8", "RGB", np.asarray(cmyk.convert("RGB"))


@pytest.mark.parametrize("make", [_float_tiff, _int32_tiff, _cmyk_tiff], ids=["F", "I", "CMYK"])
def test_tiff_structure_is_not_carried_into_the_output(tmp_path, make):
    src, depth, pil_mode, expected = make(tmp_path)
    with PILImage.open(src) as pil:
        source_tags = dict(pil.getexif())
    assert source_tags[271] == "Maker"
    assert {258, 259, 262, 273, 278, 279} <= source_tags.keys()
    im = read_image(src)
    out = tmp_path / "out.tif"
    write_image(im, out, depth=depth)
    with PILImage.open(out) as pil:
        assert pil.mode == pil_mode
        np.testing.assert_array_equal(np.asarray(pil).reshape(expected.shape), expected)
        tags = pil.getexif()
        assert tags[271] == "Maker"  # descriptive tags are kept
        assert tags.get(339, 1) == 1  # SampleFormat: unsigned integer
        assert tags[262] == (2 if pil_mode == "RGB" else 1)  # Photometric: RGB or grey
    back = read_image(out)
    assert back.depth == depth and back.bands == im.bands
    top = 255 if depth == "8" else 65535
    np.testing.assert_allclose(back.pixels.reshape(expected.shape), expected / top, atol=1e-7)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".webp"])
def test_jpeg_exif_description_is_kept_and_orientation_reset(tmp_path, ext):
    exif = PILImage.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "EOS 5D"
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.XResolution] = 72.0
    exif[ExifTags.IFD.Exif] = {
        ExifTags.Base.DateTimeOriginal: "2020:01:02 03:04:05",
        ExifTags.Base.ExifImageWidth: 7,
        ExifTags.Base.ExifImageHeight: 5,
    }
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N"}
    src = save(tmp_path, PILImage.fromarray(RGB), "src.jpg", exif=exif.tobytes())
    im = read_image(src)
    assert (im.height, im.width) == (7, 5)  # turned upright
    write_image(im, tmp_path / f"out{ext}")
    with PILImage.open(tmp_path / f"out{ext}") as out:
        tags = out.getexif()
        assert (tags[ExifTags.Base.Make], tags[ExifTags.Base.Model]) == ("Canon", "EOS 5D")
        assert tags[ExifTags.Base.Orientation] == 1
        assert ExifTags.Base.XResolution not in tags or ext == ".tif"  # TIFF: from the DPI
        if ext == ".tif":  # Pillow's libtiff writer cannot store the sub-IFDs
            assert ExifTags.IFD.Exif not in tags and ExifTags.IFD.GPSInfo not in tags
        else:
            assert tags.get_ifd(ExifTags.IFD.Exif) == {
                ExifTags.Base.DateTimeOriginal: "2020:01:02 03:04:05"
            }
            assert tags.get_ifd(ExifTags.IFD.GPSInfo) == {ExifTags.GPS.GPSLatitudeRef: "N"}
    assert read_image(tmp_path / f"out{ext}").pixels.shape == (7, 5, 3)


# -- errors ------------------------------------------------------------------------------------


@needs_native
def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match=f"^{tmp_path}/nope.png: no such file$"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory, not an image$"):
        read_image(tmp_path)
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(ImageReadError, match="t.png: not an image file"):
        read_image(tmp_path / "t.png")
    PILImage.fromarray(RGB).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut.png: cannot decode PNG at row \d+ \(file cut"):
        read_image(tmp_path / "cut.png")  # the PNG row reader names the row
    with pytest.raises(ImageReadError, match=r"cut.png: cannot decode PNG at row \d+ \(file cut"):
        read_image(tmp_path / "cut.png", lazy=False)  # read whole by the same reader
    big = (RNG.random((64, 64, 3)) * 255).astype(np.uint8)
    PILImage.fromarray(big).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg: cannot decode image"):
        read_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize(
    ("image", "name", "kwargs", "error", "message"),
    [
        (
            from_array(RGB / 255, depth="8"),
            "x.xyz",
            {},
            UsageError,
            "cannot tell the image format from '.*x.xyz'; use .png, .jpg, .tif, .webp or .bmp",
        ),
        (
            from_array(RGBA / 255, depth="8"),
            "x.jpg",
            {},
            ImageWriteError,
            "x.jpg: JPEG cannot store transparency; write .png, .webp or .tif instead",
        ),
        (
            from_array(GREY / 255, depth="16"),
            "x.jpg",
            {},
            ImageWriteError,
            "x.jpg: JPEG cannot store 16-bit L; write .png or .tif or use --depth 8",
        ),
        (
            from_array(RGB / 255, depth="float"),
            "x.png",
            {},
            ImageWriteError,
            "x.png: float output needs a .tif \\(got PNG\\); use --depth 16 or --depth 8",
        ),
        (
            from_array(RGB / 255, depth="8"),
            "x.png",
            {"compress_level": 12},
            UsageError,
            "PNG compression level must be 0..9, got 12",
        ),
        (
            from_array(RGB / 255, depth="8"),
            "x.jpg",
            {"quality": 0},
            UsageError,
            "quality must be 1..100, got 0",
        ),
    ],
)
def test_write_errors(tmp_path, image, name, kwargs, error, message):
    with pytest.raises(error, match=message):
        write_image(image, tmp_path / name, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(ImageWriteError, match="output folder '.*nodir' does not exist"):
        write_image(from_array(GREY / 255, depth="8"), tmp_path / "nodir" / "x.png")


def test_failed_write_keeps_the_existing_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"precious")
    import convcli.image_io as mod

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod.os, "replace", broken_replace)
    with pytest.raises(
        ImageWriteError, match="keep.png: cannot write \\(No space left on device\\)"
    ):
        write_image(from_array(GREY / 255, depth="8"), target)
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import convcli.image_io as mod

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(from_array(GREY / 255, depth="8"), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


class _Std:
    def __init__(self, data: bytes = b""):
        self.buffer = io.BytesIO(data)


def test_stdin_and_stdout(monkeypatch):
    buf = io.BytesIO()
    PILImage.fromarray(RGB).save(buf, format="PNG")
    monkeypatch.setattr(sys, "stdin", _Std(buf.getvalue()))
    im = read_image("-")
    np.testing.assert_allclose(im.pixels, RGB / 255, atol=1e-7)
    out = _Std()
    monkeypatch.setattr(sys, "stdout", out)
    write_image(im, "-", format="png")
    assert out.buffer.getvalue().startswith(b"\x89PNG")
    with pytest.raises(UsageError, match="writing to standard output needs --format"):
        write_image(im, "-")


def test_from_array_checks():
    assert from_array(np.zeros((2, 3))).bands == "L"
    assert from_array(np.zeros((2, 3, 4))).bands == "RGBA"
    with pytest.raises(UsageError, match="must be \\(H, W\\) or \\(H, W, 1..4\\)"):
        from_array(np.zeros((2, 3, 5)))
    assert isinstance(from_array(np.zeros((1, 1))), Image)


def test_image_properties():
    im = from_array(np.zeros((2, 3, 2)), depth="8")
    assert (im.height, im.width, im.channels, im.has_alpha) == (2, 3, 2, True)


# -- checking an output before filtering ---------------------------------------------------------


def _outcome(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except (UsageError, ImageWriteError) as exc:
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".webp", ".bmp", ".gif"])
def test_check_output_raises_exactly_what_writing_raises(tmp_path, ext):
    outcomes = set()
    for bands in ("L", "LA", "RGB", "RGBA"):
        for depth in ("8", "16", "float"):
            dest = tmp_path / f"x{ext}"
            checked = _outcome(check_output, dest, bands=bands, depth=depth)
            assert list(tmp_path.iterdir()) == []  # nothing written by the check
            image = from_array(np.full((3, 4, len(bands)), 0.5), depth=depth, bands=bands)
            written = _outcome(write_image, image, dest)
            assert checked == written, (bands, depth)
            assert dest.exists() == (written is None)
            dest.unlink(missing_ok=True)
            outcomes.add(checked is None)
    # TIFF holds every layout at every depth; the others refuse some
    assert outcomes == ({False} if ext == ".gif" else {True} if ext == ".tif" else {True, False})


def test_check_output_other_errors_and_result(tmp_path, monkeypatch):
    assert check_output(tmp_path / "a.jpeg", bands="RGB", depth="8") == "JPEG"
    assert check_output("-", bands="RGBA", depth="16", format="png") == "PNG"
    assert check_output(io.BytesIO(), bands="L", depth="float", format="tif") == "TIFF"
    with pytest.raises(UsageError, match="writing to standard output needs --format"):
        check_output("-", bands="RGB", depth="8")
    with pytest.raises(UsageError, match="unknown image format 'gif'"):
        check_output(tmp_path / "a.png", bands="RGB", depth="8", format="gif")
    with pytest.raises(ImageWriteError, match="x.png: output folder '.*nodir' does not exist"):
        check_output(tmp_path / "nodir" / "x.png", bands="RGB", depth="8")
    with pytest.raises(ImageWriteError, match="sub.png: is a directory"):
        (tmp_path / "sub.png").mkdir()
        check_output(tmp_path / "sub.png", bands="RGB", depth="8")
    with pytest.raises(UsageError, match="quality must be 1..100, got 101"):
        check_output(tmp_path / "a.jpg", bands="RGB", depth="8", quality=101)
    with pytest.raises(UsageError, match="PNG compression level must be 0..9, got -1"):
        check_output(tmp_path / "a.png", bands="RGB", depth="8", compress_level=-1)
    with pytest.raises(UsageError, match="depth must be 8, 16 or float, got '12'"):
        check_output(tmp_path / "a.png", bands="RGB", depth="12")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="bands must be L, LA, RGB or RGBA, got 'CMYK'"):
        check_output(tmp_path / "a.png", bands="CMYK", depth="8")
    monkeypatch.chdir(tmp_path)
    assert check_output("plain.webp", bands="LA", depth="8") == "WEBP"


def test_a_decoder_crash_on_a_damaged_file_is_one_read_error(tmp_path):
    # a real damaged TIFF on which Pillow raised TypeError ("Missing dimensions") and
    # warned about its EXIF: one ImageReadError naming the file, no warning escapes
    path = Path(__file__).parent / "data" / "corrupt_tiff_missing_dimensions.tif"
    with pytest.raises(ImageReadError, match=r"corrupt_tiff_missing_dimensions.tif: cannot decode"):
        read_image(path)


def test_any_decoder_exception_becomes_a_read_error(tmp_path, monkeypatch):
    path = save(tmp_path, PILImage.fromarray(RGB), "ok.bmp")  # (decoded whole, by Pillow)

    def broken_load(self):
        raise TypeError("Missing dimensions")

    monkeypatch.setattr(PILImage.Image, "load", broken_load)
    with pytest.raises(ImageReadError) as info:
        read_image(path, lazy=False)
    assert str(info.value) == f"{path}: cannot decode image (Missing dimensions)"


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_fast_jpeg_decoder_gives_pillows_samples_for_every_orientation(
    tmp_path, monkeypatch, orientation, mode
):
    import convcli.image_io as image_io

    im = PILImage.fromarray(RNG.integers(0, 256, (30, 41, 3)).astype(np.uint8)).convert(mode)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    im.save(path, "JPEG", exif=exif.tobytes(), quality=90)
    fast = image_io.read_samples(path)
    calls = []
    real = image_io._jpeg_samples
    monkeypatch.setattr(image_io, "_jpeg_samples", lambda *a: calls.append(real(*a)) or None)
    slow = image_io.read_samples(path)  # Pillow's decoder and exif_transpose
    assert calls and calls[0] is not None  # the fast path did take this file
    assert fast.bands == slow.bands == mode
    np.testing.assert_array_equal(fast.samples, slow.samples)
    assert fast.meta.exif == slow.meta.exif and fast.meta.dpi == slow.meta.dpi


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("with_meta", [False, True])
@pytest.mark.parametrize("quality", [75, 92])
def test_fast_jpeg_encoder_writes_pillows_bytes(mode, with_meta, quality):
    from convcli.image_io import ImageMeta, Samples, encode_samples

    arr = RNG.integers(0, 256, (37, 53, 3)).astype(np.uint8)
    pil = PILImage.fromarray(arr).convert(mode)
    samples = np.asarray(pil)
    samples = samples[:, :, None] if samples.ndim == 2 else samples
    meta = ImageMeta()
    params: dict = {"quality": quality}
    if with_meta:
        exif = PILImage.Exif()
        exif[0x010F] = "Maker"
        icc = bytes(range(256)) * 300  # two APP2 markers
        meta = ImageMeta(icc_profile=icc, dpi=(300.0, 299.6), exif=exif.tobytes())
        params.update(exif=meta.exif, icc_profile=icc, dpi=meta.dpi)
    buf = io.BytesIO()
    pil.save(buf, "JPEG", **params)
    ours = encode_samples(Samples(samples, mode, "8", meta), "JPEG", quality=quality)
    assert ours == buf.getvalue()


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "PostScript/EPS"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "PDF"),
        (b"8BPS\x00\x01" + bytes(40), "Photoshop (PSD)"),
    ],
)
def test_formats_outside_the_allowlist_are_refused_before_any_decoder(tmp_path, content, kind):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value) == (
        f"{path}: its content is {kind}, which convcli does not read "
        "(it reads PNG, JPEG, TIFF, WebP, BMP and GIF)"
    )


def test_pillow_formats_outside_the_allowlist_are_not_read(tmp_path):
    PILImage.fromarray(RGB).save(tmp_path / "x.pcx")  # a format Pillow reads, convcli does not
    (tmp_path / "x.png").write_bytes((tmp_path / "x.pcx").read_bytes())
    with pytest.raises(
        ImageReadError, match=r"x.png: its content is PCX, which convcli does not read"
    ):
        read_image(tmp_path / "x.png")
    PILImage.fromarray(RGB).save(tmp_path / "i.ico")
    with pytest.raises(
        ImageReadError, match=r"i.ico: its content is ICO, which convcli does not read"
    ):
        read_image(tmp_path / "i.ico")


def test_content_that_is_another_allowed_format_is_read_with_a_note(tmp_path):
    PILImage.fromarray(RGB).save(tmp_path / "g.gif")
    (tmp_path / "g.png").write_bytes((tmp_path / "g.gif").read_bytes())
    im = read_image(tmp_path / "g.png")
    assert im.meta.notes[0] == "the content is GIF, not the PNG its name says; read as GIF"
    assert read_image(tmp_path / "g.gif").meta.notes == []


def test_a_truncated_webp_says_truncated(tmp_path):
    PILImage.fromarray(RNG.integers(0, 256, (40, 50, 3)).astype(np.uint8)).save(
        tmp_path / "full.webp", lossless=True
    )
    data = (tmp_path / "full.webp").read_bytes()
    (tmp_path / "cut.webp").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ImageReadError,
        match=rf"cut.webp: cannot decode image \(truncated WebP: {len(data) // 2:,} of "
        rf"{len(data):,} bytes\)$",
    ):
        read_image(tmp_path / "cut.webp")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_a_pipe_named_as_the_input_is_read_once_whole(tmp_path, ext):
    """``convcli blur <(curl ...) -o out.png`` names a pipe: it can be read only once, so
    nothing may peek at its first bytes (the PNG/TIFF sniffing, the JPEG read-ahead)."""
    import subprocess
    import threading

    from convcli import jpeg_codec

    src = tmp_path / f"in{ext}"
    PILImage.fromarray(np.random.default_rng(3).integers(0, 256, (40, 30, 3), np.uint8)).save(src)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert jpeg_codec.prefetch(str(fifo)) is None  # never opens it (open would block here)

    def feed() -> None:
        try:
            with open(fifo, "wb") as fh:
                fh.write(src.read_bytes())
        except BrokenPipeError:  # a reader that peeked and closed (the bug)
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    command = [sys.executable, "-m", "convcli", "blur"]
    try:  # a reader that opens the pipe a second time waits forever: a timeout, a failure
        done = subprocess.run(
            [*command, str(fifo), "-o", str(tmp_path / "a.png")], capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
    finally:
        try:  # let a writer still waiting for a reader go
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        writer.join(timeout=10)
    assert done.returncode == 0, done.stderr
    subprocess.run([*command, str(src), "-o", str(tmp_path / "b.png")], check=True)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@given(st.text(alphabet="ab./", min_size=1, max_size=12))
def test_the_folder_and_extension_of_a_name_are_pathlibs(name):
    """atomic.parent_folder and image_io._suffix stand in for pathlib (not imported by a
    filtering run): the same folder, and the same extension, for any name."""
    import pathlib

    from convcli.atomic import parent_folder
    from convcli.image_io import _suffix

    expected = str(pathlib.Path(name).parent)
    if name.startswith("//") and not name.startswith("///"):
        expected = expected[1:]  # POSIX leaves "//" to the system; pathlib keeps it, Linux's "/"
    assert parent_folder(name) == expected
    assert _suffix(name) == pathlib.Path(name).suffix.lower()
