"""TIFF by strips and tiles: lazy reading, streamed writing, damaged files, BigTIFF."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from convcli import tiff_codec
from convcli.errors import ImageReadError
from convcli.image_io import Image, ImageMeta, read_image, read_samples, to_depth, write_image
from convcli.kernels import Kernel, builtin_kernel
from convcli.pipeline.files import filter_file
from convcli.process import FilterOptions, filter_image

RNG = np.random.default_rng(7)
LAYOUTS = [("L", np.uint8), ("LA", np.uint16), ("RGB", np.uint16), ("RGBA", np.uint8),
           ("L", np.float32), ("RGB", np.float32)]  # fmt: skip


def _values(height, width, bands, dtype):
    if dtype == np.float32:
        return RNG.uniform(0, 1, (height, width, len(bands))).astype(np.float32)
    top = np.iinfo(dtype).max
    return RNG.integers(0, top + 1, (height, width, len(bands))).astype(dtype)


def _save(path, values, bands, **kwargs):
    extra = {"extrasamples": ["unassalpha"]} if bands in ("LA", "RGBA") else {}
    data = values[:, :, 0] if values.shape[2] == 1 else values
    photometric = "rgb" if bands.startswith("RGB") else "minisblack"
    tifffile.imwrite(path, data, photometric=photometric, **extra, **kwargs)
    return path


@pytest.mark.parametrize(("bands", "dtype"), LAYOUTS)
@pytest.mark.parametrize(
    "layout",
    [
        {"rowsperstrip": 5},
        {"rowsperstrip": 5, "compression": "zlib"},
        {"tile": (16, 16)},
        {"tile": (16, 32), "compression": "zlib", "predictor": True},
    ],  # fmt: skip
    ids=["strips", "deflate-strips", "tiles", "deflate-tiles-predictor"],
)
def test_lazy_rows_equal_the_whole_image(tmp_path, bands, dtype, layout):
    if dtype == np.float32 and layout.get("predictor"):
        layout = {**layout, "predictor": False}
    values = _values(37, 45, bands, dtype)
    stored = read_samples(_save(tmp_path / "x.tif", values, bands, **layout))
    rows = stored.samples
    assert isinstance(rows, tiff_codec.TiffRows)
    assert (stored.bands, rows.shape, rows.dtype) == (bands, values.shape, values.dtype)
    for window in (slice(0, 37), slice(3, 4), slice(4, 23), slice(30, 99)):
        np.testing.assert_array_equal(rows[window], values[window])
    wrap = np.array([36, 0, 1, 35, 17], np.intp)
    np.testing.assert_array_equal(rows[wrap], values[wrap])
    rows.close()
    whole = read_image(tmp_path / "x.tif")  # the in-memory path reads the same samples
    assert whole.depth == {np.uint8: "8", np.uint16: "16", np.float32: "float"}[dtype]
    np.testing.assert_array_equal(to_depth(whole.pixels, whole.depth), values)


@pytest.mark.parametrize(("bands", "dtype"), LAYOUTS)
@pytest.mark.parametrize("mode", ["reflect", "wrap", "constant"])
def test_tiff_to_tiff_streams_the_whole_image_result(tmp_path, bands, dtype, mode):
    values = _values(50, 21, bands, dtype)
    src = _save(tmp_path / "in.tif", values, bands, rowsperstrip=3, compression="zlib")
    kernels = [Kernel(RNG.normal(size=(5, 4)) / 10, origin=(4, 1)), builtin_kernel("box")]
    policy = "none" if dtype == np.float32 else "offset"
    options = FilterOptions(backend="direct", mode=mode, range_policy=policy)
    report = filter_file(src, tmp_path / "out.tif", kernels, options, strip_rows=4)
    assert report.streamed
    expected, _ = filter_image(read_image(src), kernels, options)
    back = read_samples(tmp_path / "out.tif")
    assert (back.bands, back.depth) == (bands, expected.depth)
    np.testing.assert_array_equal(back.samples[0:50], to_depth(expected.pixels, expected.depth))
    back.samples.close()
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:  # a plain strip TIFF any reader takes
        page = tif.pages.first
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert not page.is_tiled and not tif.is_bigtiff
        assert page.predictor == (1 if dtype == np.float32 else 2)


def test_a_truncated_tiff_names_the_rows_and_leaves_nothing(tmp_path):
    values = _values(64, 30, "RGB", np.uint8)
    src = _save(tmp_path / "cut.tif", values, "RGB", rowsperstrip=8, compression="zlib")
    data = src.read_bytes()
    with tifffile.TiffFile(src) as tif:
        page = tif.pages.first
        cut = page.dataoffsets[5] + 10  # strips 0-4 whole, strip 5 cut short
    src.write_bytes(data[:cut])
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    with pytest.raises(ImageReadError, match=r"cut.tif: truncated TIFF: rows 40-63 are missing"):
        filter_file(src, out, [builtin_kernel("box")], strip_rows=4)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tif", "out.png"]


def test_a_corrupt_strip_names_the_rows(tmp_path):
    values = _values(40, 30, "L", np.uint8)
    src = _save(tmp_path / "bad.tif", values, "L", rowsperstrip=10, compression="zlib")
    with tifffile.TiffFile(src) as tif:
        start = tif.pages.first.dataoffsets[2]
    data = bytearray(src.read_bytes())
    data[start : start + 8] = b"\xff" * 8  # not a zlib stream
    src.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"bad.tif: cannot decode TIFF rows 20-29 \("):
        filter_file(src, tmp_path / "o.tif", [builtin_kernel("box")])
    assert not (tmp_path / "o.tif").exists()


def test_the_reader_cache_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(tiff_codec, "CACHE_BYTES", 30 * 1000 * 3)
    values = _values(400, 1000, "RGB", np.uint8)
    src = _save(tmp_path / "tall.tif", values, "RGB", rowsperstrip=10)
    rows = read_samples(src).samples
    peak = 0
    for start in range(0, 400, 7):
        np.testing.assert_array_equal(rows[start : start + 7], values[start : start + 7])
        peak = max(peak, sum(b.nbytes for b in rows._cache.values()))
    assert peak <= 30 * 1000 * 3
    rows.close()


def test_bigtiff_past_the_classic_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(tiff_codec, "BIGTIFF_BYTES", 1000)
    image = Image(RNG.uniform(0, 1, (40, 30, 3)).astype(np.float32), "RGB", "8")
    write_image(image, tmp_path / "big.tif")
    assert (tmp_path / "big.tif").read_bytes()[:4] == b"II+\x00"
    back = read_samples(tmp_path / "big.tif")
    np.testing.assert_array_equal(back.samples[0:40], to_depth(image.pixels, "8"))
    back.samples.close()


def test_tiff_output_keeps_icc_dpi_and_descriptive_tags(tmp_path):
    exif = PILImage.Exif()
    exif[0x010F] = "Maker"
    exif[0x0112] = 6  # Orientation: the pixels are written upright, so 1 in the output
    meta = ImageMeta(icc_profile=b"\x01\x02" * 64, dpi=(240.0, 240.0), exif=exif.tobytes())
    write_image(Image(np.zeros((4, 5, 1), np.float32), "L", "16", meta), tmp_path / "m.tif")
    with PILImage.open(tmp_path / "m.tif") as im:
        assert im.info["icc_profile"] == meta.icc_profile
        assert tuple(round(v) for v in im.info["dpi"]) == (240, 240)
        tags = im.getexif()
        assert tags[0x010F] == "Maker" and tags[0x0112] == 1
    stored = read_samples(tmp_path / "m.tif")
    assert stored.meta.icc_profile == meta.icc_profile and stored.depth == "16"
    stored.samples.close()


def test_tiffs_the_strip_reader_does_not_take_are_decoded_whole(tmp_path):
    # palette and CMYK go through Pillow as before
    pal = PILImage.fromarray(RNG.integers(0, 4, (6, 7)).astype(np.uint8), "L").convert("P")
    pal.save(tmp_path / "p.tif")
    stored = read_samples(tmp_path / "p.tif")
    assert isinstance(stored.samples, np.ndarray) and stored.bands == "RGB"
    cmyk = PILImage.new("CMYK", (5, 4), (0, 0, 0, 0))
    cmyk.save(tmp_path / "c.tif")
    assert isinstance(read_samples(tmp_path / "c.tif").samples, np.ndarray)


def test_a_strip_shorter_than_its_tags_say_names_the_rows(tmp_path):
    values = _values(40, 30, "RGB", np.uint8)
    src = _save(tmp_path / "short.tif", values, "RGB", rowsperstrip=10, compression="zlib")
    with tifffile.TiffFile(src) as tif:
        page = tif.pages.first
        offset, count = page.dataoffsets[1], page.databytecounts[1]
    import zlib

    small = zlib.compress(bytes(30 * 3 * 2))  # two rows where ten belong
    assert len(small) <= count
    data = bytearray(src.read_bytes())
    data[offset : offset + len(small)] = small
    src.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"short.tif: cannot decode TIFF rows 10-19 \("):
        filter_file(src, tmp_path / "o.png", [builtin_kernel("box")])
    assert not (tmp_path / "o.png").exists()


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 9),
    layout=st.sampled_from(LAYOUTS),
    byteorder=st.sampled_from("<>"),
    strip=st.one_of(st.none(), st.integers(1, 41)),  # None: the whole image in one strip
    band_bytes=st.integers(1, 300),
    data=st.data(),
)
def test_uncompressed_rows_are_read_from_the_file_in_small_bands(
    tmp_path_factory, height, width, layout, byteorder, strip, band_bytes, data
):
    bands, dtype = layout
    values = _values(height, width, bands, dtype)
    path = tmp_path_factory.mktemp("raw") / "raw.tif"
    kwargs = {"byteorder": byteorder} | ({} if strip is None else {"rowsperstrip": strip})
    _save(path, values.astype(np.dtype(dtype).newbyteorder(byteorder)), bands, **kwargs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiff_codec, "RAW_BAND_BYTES", band_bytes)
        rows = read_samples(path).samples
    assert isinstance(rows, tiff_codec.TiffRows) and rows.raw
    row_bytes = width * len(bands) * np.dtype(dtype).itemsize
    assert rows.band_rows == max(1, min(rows.strip_rows, band_bytes // row_bytes))
    start = data.draw(st.integers(0, height - 1))
    stop = data.draw(st.integers(start + 1, height))
    np.testing.assert_array_equal(rows[start:stop], values[start:stop])
    picks = np.array(data.draw(st.lists(st.integers(0, height - 1), min_size=1)), np.intp)
    np.testing.assert_array_equal(rows[picks], values[picks])
    assert rows[start:stop].dtype == np.dtype(dtype)  # native byte order
    rows.close()


def test_a_tiff_of_one_uncompressed_strip_is_not_read_whole(tmp_path):
    values = _values(3000, 500, "RGB", np.uint8)  # 4.5 MB in one strip
    src = _save(tmp_path / "one.tif", values, "RGB")
    with tifffile.TiffFile(src) as tif:
        assert len(tif.pages.first.dataoffsets) == 1
    rows = read_samples(src).samples
    peak = 0
    for start in range(0, 3000, 200):
        np.testing.assert_array_equal(rows[start : start + 200], values[start : start + 200])
        peak = max(peak, max(b.nbytes for b in rows._cache.values()))
    assert peak <= tiff_codec.RAW_BAND_BYTES < values.nbytes
    rows.close()
    report = filter_file(src, tmp_path / "out.png", [builtin_kernel("box")], strip_rows=64)
    assert report.streamed
    expected, _ = filter_image(read_image(src), [builtin_kernel("box")])
    np.testing.assert_array_equal(
        np.asarray(PILImage.open(tmp_path / "out.png")), to_depth(expected.pixels, "8")
    )


def test_an_uncompressed_strip_shorter_than_its_rows_names_them(tmp_path):
    values = _values(40, 30, "RGB", np.uint8)
    src = _save(tmp_path / "short.tif", values, "RGB", rowsperstrip=10)
    with tifffile.TiffFile(src) as tif:
        tag = tif.pages.first.tags["StripByteCounts"]
        where, size = tag.valueoffset, tag.valuebytecount
        kind = "<u2" if size == 2 * tag.count else "<u4"  # SHORT or LONG values
    data = bytearray(src.read_bytes())
    counts = np.frombuffer(bytes(data[where : where + size]), kind).copy()
    assert counts[2] == 900
    counts[2] -= 95  # strip 2 (rows 20-29) says it holds one row and 5 bytes less
    data[where : where + size] = counts.tobytes()
    src.write_bytes(bytes(data))
    out = tmp_path / "o.png"
    with pytest.raises(ImageReadError, match=r"short.tif: cannot decode TIFF rows 20-29 \("):
        filter_file(src, out, [builtin_kernel("box")], strip_rows=4)
    assert not out.exists()


def _save_planar(path, values, bands, **kwargs):
    extra = {"extrasamples": ["unassalpha"]} if bands in ("LA", "RGBA") else {}
    photometric = "rgb" if bands.startswith("RGB") else "minisblack"
    planes = np.ascontiguousarray(values.transpose(2, 0, 1))
    tifffile.imwrite(
        path, planes, photometric=photometric, planarconfig="separate", **extra, **kwargs
    )
    return path


@pytest.mark.parametrize(("bands", "dtype"), [b for b in LAYOUTS if len(b[0]) > 1])
@pytest.mark.parametrize(
    "layout",
    [
        {},
        {"rowsperstrip": 4},
        {"rowsperstrip": 5, "compression": "lzw"},
        {"tile": (16, 16), "compression": "zlib"},
    ],  # fmt: skip
    ids=["one-strip", "strips", "lzw-strips", "deflate-tiles"],
)
def test_planar_tiffs_are_read_by_rows_at_full_depth(tmp_path, bands, dtype, layout):
    values = _values(37, 45, bands, dtype)
    src = _save_planar(tmp_path / "planar.tif", values, bands, **layout)
    stored = read_samples(src)
    rows = stored.samples
    assert isinstance(rows, tiff_codec.TiffRows) and rows.planar
    assert (stored.bands, stored.depth, rows.shape) == (
        bands,
        {np.uint8: "8", np.uint16: "16", np.float32: "float"}[dtype],
        values.shape,
    )
    for window in (slice(0, 37), slice(3, 4), slice(4, 23), slice(30, 99)):
        np.testing.assert_array_equal(rows[window], values[window])
    rows.close()
    if dtype != np.float32:  # planar to contiguous: the same samples written back
        plain = FilterOptions(alpha="plain")  # (premultiplied, colour under alpha 0 is 0)
        identity = [builtin_kernel("identity")]
        filter_file(src, tmp_path / "out.tif", identity, plain, strip_rows=5)
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), values)


@pytest.mark.parametrize(("bands", "dtype"), [("RGB", np.uint16), ("RGB", np.float32),
                                              ("LA", np.uint16), ("L", np.uint8)])  # fmt: skip
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_tiff_with_an_orientation_tag_is_read_upright_at_full_depth(
    tmp_path, bands, dtype, orientation
):
    from convcli.image_io import _UPRIGHT

    values = _values(9, 14, bands, dtype)
    src = _save(tmp_path / "o.tif", values, bands, rowsperstrip=4,
                extratags=[(274, "H", 1, orientation, True)])  # fmt: skip
    stored = read_samples(src)
    upright = _UPRIGHT[orientation](values)
    assert stored.samples.dtype == dtype and stored.bands == bands
    np.testing.assert_array_equal(stored.samples, upright)
    assert (stored.height, stored.width) == upright.shape[:2]
    filter_file(src, tmp_path / "out.tif", [builtin_kernel("identity")])
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages.first
        assert page.tags.valueof(274, 1) in (1, None)  # written upright
        back = page.asarray()
    np.testing.assert_array_equal(back.reshape(upright.shape), upright)


def test_a_tiff_pillow_cannot_open_keeps_its_icc_dpi_and_tags(tmp_path):
    values = _values(6, 7, "RGB", np.float32)  # float RGB: Pillow has no mode for it
    with pytest.raises(PILImage.UnidentifiedImageError):
        PILImage.open(_save(tmp_path / "probe.tif", values, "RGB"))
    icc = b"\x00\x01" * 100
    src = _save(tmp_path / "f.tif", values, "RGB", resolution=(300, 300), resolutionunit=2,
                iccprofile=icc, description="a float picture", metadata=None,
                extratags=[(315, "s", 0, "Someone", True)])  # fmt: skip
    stored = read_samples(src)
    assert stored.meta.icc_profile == icc and stored.meta.dpi == (300.0, 300.0)
    tags = PILImage.Exif()
    tags.load(stored.meta.exif)
    assert tags[270] == "a float picture" and tags[315] == "Someone"
    stored.samples.close()
    cm = _save(tmp_path / "cm.tif", values, "RGB", resolution=(100, 100), resolutionunit=3)
    stored = read_samples(cm)
    assert stored.meta.dpi == pytest.approx((254.0, 254.0))
    stored.samples.close()


def test_tifffiles_shape_description_is_not_carried_to_the_output(tmp_path):
    values = _values(8, 5, "RGB", np.uint16)
    src = _save(tmp_path / "s.tif", values, "RGB")  # tifffile writes {"shape": [8, 5, 3]}
    with tifffile.TiffFile(src) as tif:
        assert tif.pages.first.description.startswith('{"shape":')
    filter_file(src, tmp_path / "out.tif", [builtin_kernel("identity")])
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert not tif.pages.first.description.startswith('{"shape":')


def test_unspecified_extra_samples_are_dropped(tmp_path):
    values = _values(10, 6, "RGBA", np.uint16)
    tifffile.imwrite(tmp_path / "x.tif", values, photometric="rgb", extrasamples=["unspecified"])
    stored = read_samples(tmp_path / "x.tif")
    assert (stored.bands, stored.depth) == ("RGB", "16")
    np.testing.assert_array_equal(stored.samples[0:10], values[..., :3])
    stored.samples.close()


def test_a_tiff_cut_before_its_directory_says_so(tmp_path):
    # Pillow and libtiff write the directory after the pixels: a cut file has none to read
    src = tmp_path / "cut.tif"
    PILImage.fromarray(_values(60, 50, "RGB", np.uint8)).save(src, compression="tiff_lzw")
    data = src.read_bytes()
    assert int.from_bytes(data[4:8], "little") > len(data) // 2  # the directory is at the end
    src.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(ImageReadError, match=r"cut.tif: cannot decode TIFF \(its image directory"):
        read_samples(src)


# -- --tiff-compression ----------------------------------------------------------------------

COMPRESSION_TAGS = {"deflate": tifffile.COMPRESSION.ADOBE_DEFLATE, "lzw": tifffile.COMPRESSION.LZW,
                    "zstd": tifffile.COMPRESSION.ZSTD, "packbits": tifffile.COMPRESSION.PACKBITS,
                    "none": tifffile.COMPRESSION.NONE}  # fmt: skip
ALL_LAYOUTS = [(b, t) for t in (np.uint8, np.uint16) for b in ("L", "LA", "RGB", "RGBA")] + [
    ("L", np.float32), ("RGB", np.float32)]  # fmt: skip
#: The layouts Pillow reads at full depth (it reads 16-bit colour as 8-bit, float colour not
#: at all).
PILLOW_READS = {("L", np.uint8), ("LA", np.uint8), ("RGB", np.uint8), ("RGBA", np.uint8),
                ("L", np.uint16), ("L", np.float32)}  # fmt: skip


def _filtered(src, bands, dtype):
    """The filter of the compression tests, and its result computed in memory."""
    kernels = [Kernel(np.array([[1, 2, 1], [0, 3, -1]]) / 6)]
    options = FilterOptions(range_policy="none" if dtype == np.float32 else "clip")
    expected, _ = filter_image(read_image(src), kernels, options)
    return kernels, options, to_depth(expected.pixels, expected.depth)


def test_the_library_names_the_compressions_the_cli_offers():
    from convcli.cli import main

    blur = main.commands["blur"]
    choice = next(p for p in blur.params if p.name == "tiff_compression").type
    assert list(choice.choices) == list(tiff_codec.COMPRESSIONS) == list(COMPRESSION_TAGS)
    assert {k: int(v) for k, v in COMPRESSION_TAGS.items()} == tiff_codec.COMPRESSIONS


@pytest.mark.parametrize("compression", list(COMPRESSION_TAGS))
@pytest.mark.parametrize(("bands", "dtype"), ALL_LAYOUTS)
def test_each_compression_is_tagged_and_holds_the_result(tmp_path, compression, bands, dtype):
    values = _values(41, 23, bands, dtype)
    values[:, 5:15] = values[:, 5:6]  # runs, for PackBits to pack
    src = _save(tmp_path / "in.tif", values, bands, rowsperstrip=4)
    kernels, options, expected = _filtered(src, bands, dtype)
    out = tmp_path / "out.tif"
    report = filter_file(src, out, kernels, options, tiff_compression=compression, strip_rows=6)
    assert report.streamed
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.compression == COMPRESSION_TAGS[compression]
        predicted = dtype != np.float32 and compression in ("deflate", "lzw", "zstd")
        assert page.predictor == (2 if predicted else 1)
        assert not page.is_tiled
        back = page.asarray()
    np.testing.assert_array_equal(back.reshape(expected.shape), expected)
    if (bands, dtype) in PILLOW_READS:  # libtiff's decoders, through Pillow
        with PILImage.open(out) as im:
            pil = np.asarray(im)
        np.testing.assert_array_equal(pil.reshape(expected.shape), expected)


@pytest.mark.parametrize("compression", list(COMPRESSION_TAGS))
def test_compressed_bytes_depend_on_neither_threads_nor_strips(tmp_path, monkeypatch, compression):
    monkeypatch.setattr(tiff_codec, "STRIP_BYTES", 700)  # many TIFF strips: the pool encodes
    for bands, dtype in (("RGB", np.uint8), ("LA", np.uint16), ("RGB", np.float32)):
        values = _values(60, 31, bands, dtype)
        src = _save(tmp_path / f"{bands}{np.dtype(dtype).name}.tif", values, bands)
        kernels, options, _ = _filtered(src, bands, dtype)
        outputs = []
        for workers, strip_rows in ((1, 5), (2, 5), (2, 13), (1, 60)):
            out = tmp_path / f"o{workers}-{strip_rows}.tif"
            filter_file(src, out, kernels, options, tiff_compression=compression,
                        workers=workers, strip_rows=strip_rows)  # fmt: skip
            outputs.append(out.read_bytes())
        assert all(data == outputs[0] for data in outputs[1:])
        with tifffile.TiffFile(tmp_path / "o2-5.tif") as tif:
            assert len(tif.pages.first.dataoffsets) > 5


def test_the_default_is_deflate_to_the_byte(tmp_path):
    values = _values(30, 20, "RGB", np.uint8)
    src = _save(tmp_path / "in.tif", values, "RGB")
    kernels, options, _ = _filtered(src, "RGB", np.uint8)
    filter_file(src, tmp_path / "default.tif", kernels, options)
    filter_file(src, tmp_path / "deflate.tif", kernels, options, tiff_compression="deflate")
    filter_file(src, tmp_path / "lzw.tif", kernels, options, tiff_compression="lzw")
    default = (tmp_path / "default.tif").read_bytes()
    assert default == (tmp_path / "deflate.tif").read_bytes()
    assert default != (tmp_path / "lzw.tif").read_bytes()


@pytest.mark.parametrize("compression", list(COMPRESSION_TAGS))
def test_the_whole_image_writers_take_the_compression_too(tmp_path, compression):
    import io

    values = _values(19, 26, "RGBA", np.uint16)
    src = _save(tmp_path / "in.tif", values, "RGBA")
    kernels, options, expected = _filtered(src, "RGBA", np.uint16)
    buf = io.BytesIO()  # not a path: the result is encoded whole (encode_samples)
    report = filter_file(src, buf, kernels, options, format="tiff", tiff_compression=compression)
    assert not report.streamed
    whole = Image(expected.astype(np.float32) / 65535, "RGBA", "16", ImageMeta())
    write_image(whole, tmp_path / "w.tif", tiff_compression=compression)
    for data in (buf.getvalue(), (tmp_path / "w.tif").read_bytes()):
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            assert tif.pages.first.compression == COMPRESSION_TAGS[compression]
            np.testing.assert_array_equal(tif.pages.first.asarray(), expected)


def test_tiff_compression_is_refused_for_other_formats_and_unknown_names(tmp_path):
    from convcli.errors import UsageError

    values = _values(10, 10, "RGB", np.uint8)
    src = _save(tmp_path / "in.tif", values, "RGB")
    kernels = [builtin_kernel("box")]
    out = tmp_path / "out.png"
    with pytest.raises(UsageError) as err:
        filter_file(src, out, kernels, tiff_compression="lzw")
    assert str(err.value) == (
        f"{out}: --tiff-compression is for TIFF output, and this is PNG; write .tif or leave it out"
    )
    with pytest.raises(UsageError, match="^TIFF compression must be deflate, lzw, zstd, "
                       "packbits or none, got 'jpeg'$"):  # fmt: skip
        filter_file(src, tmp_path / "out.tif", kernels, tiff_compression="jpeg")
    with pytest.raises(UsageError, match="this is JPEG"):
        write_image(read_image(src), tmp_path / "w.jpg", tiff_compression="zstd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


@pytest.mark.skipif(not shutil.which("vips"), reason="the vips command is not installed")
@pytest.mark.parametrize("compression", list(COMPRESSION_TAGS))
def test_vips_reads_each_compression(tmp_path, compression):
    """libvips (libtiff) decodes what is written: it copies each file to an uncompressed
    TIFF holding the same samples."""
    for bands, dtype in (("RGB", np.uint8), ("L", np.uint16), ("RGBA", np.uint16)):
        values = _values(33, 40, bands, dtype)
        src = _save(tmp_path / "in.tif", values, bands)
        kernels, options, expected = _filtered(src, bands, dtype)
        out, copy = tmp_path / "out.tif", tmp_path / "copy.tif"
        filter_file(src, out, kernels, options, tiff_compression=compression, strip_rows=7)
        subprocess.run(["vips", "copy", str(out), f"{copy}[compression=none]"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        np.testing.assert_array_equal(tifffile.imread(copy).reshape(expected.shape), expected)


@pytest.mark.parametrize(("bands", "dtype"), LAYOUTS)
@pytest.mark.parametrize("planar", [False, True])
def test_a_whole_read_gives_what_the_rows_give(tmp_path, bands, dtype, planar):
    # read_samples(lazy=False), and with it --verify, decoded TIFFs with Pillow: 16-bit
    # colour came out 8-bit, float RGB and planar 16-bit were refused as damaged, big-endian
    # float came back wrong
    values = _values(23, 17, bands, dtype)
    save = _save_planar if planar and len(bands) > 1 else _save
    src = save(tmp_path / "w.tif", values.astype(np.dtype(dtype).newbyteorder(">")), bands,
               byteorder=">", rowsperstrip=5, compression="zlib")  # fmt: skip
    with read_samples(src, lazy=False) as whole:
        assert isinstance(whole.samples, np.ndarray)
        assert whole.samples.dtype == dtype and whole.bands == bands
        np.testing.assert_array_equal(whole.samples, values)


def test_verify_reads_the_tiff_it_filters(tmp_path):
    from click.testing import CliRunner

    from convcli.cli import main

    src = _save(tmp_path / "f.tif", _values(30, 20, "RGB", np.float32), "RGB")
    result = CliRunner().invoke(
        main, ["blur", str(src), "-o", str(tmp_path / "o.tif"), "--verify", "--verbose"]
    )
    assert result.exit_code == 0, result.output
    assert "verify: direct vs fft agree" in result.stderr


@pytest.mark.parametrize(("compression", "big"), [("lzw", True), ("packbits", False),
                                                  ("none", False), ("deflate", False)])  # fmt: skip
def test_bigtiff_is_chosen_for_what_the_compression_can_grow_to(tmp_path, monkeypatch,
                                                                compression, big):  # fmt: skip
    # LZW makes noise about 1.4x larger: a classic TIFF chosen from the raw size overflowed
    # its 32-bit offsets (a struct.error traceback after minutes on a 3.5-GB image)
    noise = RNG.integers(0, 256, (64, 100, 3)).astype(np.uint8)
    monkeypatch.setattr(tiff_codec, "BIGTIFF_BYTES", int(noise.nbytes * 1.2))
    out = tmp_path / "n.tif"
    with open(out, "wb") as fh:
        tiff_codec.write_tiff(fh, [noise], height=64, width=100, bands="RGB", dtype=np.uint8,
                              compression=compression)  # fmt: skip
    assert (out.read_bytes()[:4] == b"II+\x00") is big
    np.testing.assert_array_equal(tifffile.imread(out), noise)


@pytest.mark.parametrize(("bands", "dtype"), [("RGB", np.uint16), ("RGB", np.float32)])
def test_a_malformed_private_tag_is_ignored_with_a_note(tmp_path, bands, dtype):
    # tifffile logs a tag of an invalid type; the file went to Pillow (16-bit read as 8-bit,
    # float RGB called damaged), where libtiff only warns and reads on
    import struct

    values = _values(12, 9, bands, dtype)
    src = _save(tmp_path / "t.tif", values, bands, extratags=[(65000, "H", 1, 7, True)],
                metadata=None)  # fmt: skip
    data = bytearray(src.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 65000:
            struct.pack_into("<H", data, entry + 2, 99)  # an invalid data type
    src.write_bytes(bytes(data))
    with read_samples(src) as stored:
        assert isinstance(stored.samples, tiff_codec.TiffRows)
        assert stored.samples.dtype == dtype
        np.testing.assert_array_equal(stored.samples[0:12], values)
        assert "TIFF tag 65000 ignored (invalid data type 99)" in stored.meta.notes


@pytest.mark.parametrize(
    ("dtype", "photometric", "says"),
    [
        (np.float64, "rgb", "float64 RGB, 3 samples per pixel"),
        (np.float16, "minisblack", "float16 MINISBLACK, 1 sample per pixel"),
    ],  # fmt: skip
)
def test_a_valid_tiff_of_another_layout_is_not_called_damaged(tmp_path, dtype, photometric, says):
    shape = (6, 5, 3) if photometric == "rgb" else (6, 5)
    tifffile.imwrite(tmp_path / "o.tif", np.zeros(shape, dtype), photometric=photometric)
    with pytest.raises(ImageReadError, match=rf"o.tif: cannot decode TIFF \(a layout convcli "
                       rf"does not read: {says}; it reads"):  # fmt: skip
        read_samples(tmp_path / "o.tif")


@pytest.mark.parametrize("kind", ["tiff", "png"])
def test_the_row_readers_take_row_numbers_as_numpy_does(tmp_path, kind):
    values = _values(37, 6, "RGB", np.uint8)
    if kind == "tiff":
        src = _save(tmp_path / "r.tif", values, "RGB", rowsperstrip=8)
    else:
        src = tmp_path / "r.png"
        PILImage.fromarray(values).save(src)
    with read_samples(src) as stored:
        rows = stored.samples
        np.testing.assert_array_equal(rows[np.array([-1, 0, -37])], values[[-1, 0, -37]])
        np.testing.assert_array_equal(rows[5], values[5])
        np.testing.assert_array_equal(rows[-2], values[-2])
        for bad in (np.array([37]), np.array([-38]), 40):
            with pytest.raises(IndexError):  # (an array without the C extension: numpy's)
                rows[bad]
