"""Image reading and writing: modes, formats, depth, metadata, errors, atomic writes."""

from __future__ import annotations

import io
import struct
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import ImageCms

from convcli.errors import ImageReadError, ImageWriteError, UsageError
from convcli.image_io import Image, from_array, read_image, to_depth, write_image

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


def _png16(values: np.ndarray, colour: int, filters: list[int]) -> bytes:
    """A reference PNG encoder (slow, test only) using the given filter type per row."""
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

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(out))
        + chunk(b"IEND", b"")
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
    with pytest.raises(ImageReadError, match="bad.png: cannot decode image \\(invalid PNG filter"):
        read_image(path)


# -- errors ------------------------------------------------------------------------------------


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
    with pytest.raises(ImageReadError, match="cut.png: cannot decode image"):
        read_image(tmp_path / "cut.png")
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
            "x.tif",
            {},
            ImageWriteError,
            "x.tif: float output needs a single-channel .tif \\(got RGB as TIFF\\)",
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
