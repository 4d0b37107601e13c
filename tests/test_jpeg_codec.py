"""The strip-by-strip JPEG writer: blocks joined by restart markers decode to the pixels of
the whole-image encoding, on every decoder at hand, whatever the strips and threads."""

from __future__ import annotations

import io
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from convcli import jpeg_codec
from convcli.errors import ImageWriteError
from convcli.image_io import ImageMeta, Samples, encode_samples, read_samples
from convcli.jpeg_codec import JpegWriter, split_segments
from convcli.kernels import builtin_kernel
from convcli.pipeline.engine import Stream
from convcli.pipeline.files import filter_file
from convcli.process import FilterOptions

RNG = np.random.default_rng(7)


def _photo_like(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """Smooth content plus noise: something like a photo, so the scans are not trivial."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None]
    noise = rng.normal(0, 20, (h, w, channels))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _write(samples, bands, *, quality=90, rows=None, strips=(7,), workers=1, **meta) -> bytes:
    buf = io.BytesIO()
    h, w = samples.shape[:2]
    with ThreadPoolExecutor(2) as pool:
        writer = JpegWriter(
            buf, w, h, bands, quality=quality, rows=rows, pool=pool, workers=workers, **meta
        )
        start, i = 0, 0
        while start < h:
            step = strips[i % len(strips)]
            writer.write(samples[start : start + step])
            start, i = start + step, i + 1
        writer.close()
    return buf.getvalue()


def _markers(data: bytes) -> list[int]:
    segments, scan = split_segments(data)
    restarts = [
        scan[i + 1] for i in range(len(scan) - 1) if scan[i] == 0xFF and 0xD0 <= scan[i + 1] <= 0xD7
    ]
    return [m for m, _ in segments] + restarts


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 90),
    w=st.integers(1, 70),
    bands=st.sampled_from(["L", "RGB"]),
    mcu_rows=st.integers(1, 3),
    strips=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    workers=st.sampled_from([1, 2]),
    quality=st.sampled_from([50, 90, 100]),
    seed=st.integers(0, 2**16),
)
def test_blocks_decode_to_the_whole_image_encoding(h, w, bands, mcu_rows, strips, workers,
                                                   quality, seed):  # fmt: skip
    samples = _photo_like(h, w, len(bands), seed)
    rows = jpeg_codec.mcu_rows(bands) * mcu_rows
    data = _write(samples, bands, quality=quality, rows=rows, strips=strips, workers=workers)
    whole = jpeg_codec.encode(samples, quality)
    expected = imagecodecs.jpeg8_decode(whole)
    np.testing.assert_array_equal(imagecodecs.jpeg8_decode(data), expected)
    with PILImage.open(io.BytesIO(data)) as im:  # a second decoder (Pillow's libjpeg)
        np.testing.assert_array_equal(np.asarray(im).reshape(expected.shape), expected)
    blocks = -(-h // rows)
    markers = _markers(data)
    if blocks == 1:  # one block: exactly what the whole-image encoder writes
        assert data == jpeg_codec.with_metadata(whole)
        assert 0xDD not in markers
    else:
        assert markers.count(0xDD) == 1
        assert markers[-(blocks - 1) :] == [0xD0 + i % 8 for i in range(blocks - 1)]
    # threads and strip heights never change the bytes
    assert data == _write(samples, bands, quality=quality, rows=rows, strips=(h,), workers=1)


def test_restart_interval_counts_the_mcus_of_a_block():
    samples = _photo_like(100, 50, 3, 1)
    data = _write(samples, "RGB", rows=32)
    segments, _ = split_segments(data)
    (dri,) = [s for m, s in segments if m == 0xDD]
    # 50 px wide: 4 MCUs of 16 across; 32 rows: 2 MCU rows
    assert struct.unpack(">H", dri[4:6])[0] == 4 * 2
    (sof,) = [s for m, s in segments if m == 0xC0]
    assert struct.unpack(">HH", sof[5:9]) == (100, 50)


def test_other_decoders_read_it(tmp_path):
    cv2 = pytest.importorskip("cv2")
    samples = _photo_like(333, 257, 3, 2)
    path = tmp_path / "x.jpg"
    path.write_bytes(_write(samples, "RGB", rows=48, strips=(13, 50), workers=2))
    expected = imagecodecs.jpeg8_decode(jpeg_codec.encode(samples, 90))
    np.testing.assert_array_equal(cv2.imread(str(path))[:, :, ::-1], expected)


def test_metadata_as_pillow_writes_it(tmp_path):
    exif = PILImage.Exif()
    exif[0x010F] = "convcli test"
    icc = bytes(range(256)) * 300  # two APP2 parts
    samples = _photo_like(70, 40, 3, 3)
    meta = {"icc_profile": icc, "dpi": (300.0, 150.0), "exif": exif.tobytes()}
    data = _write(samples, "RGB", rows=16, **meta)
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.info["icc_profile"] == icc
        assert im.info["dpi"] == (300, 150)
        assert im.getexif()[0x010F] == "convcli test"
    # the header is the one the whole-image path writes, but for the restart interval
    whole = encode_samples(
        Samples(samples, "RGB", "8", ImageMeta(icc_profile=icc, dpi=(300.0, 150.0),
                                               exif=exif.tobytes())), "JPEG", quality=90,
    )  # fmt: skip
    head, _ = split_segments(whole)
    mine, _ = split_segments(data)
    assert [s for m, s in mine if m not in (0xDD, 0xC0)] == [s for m, s in head if m != 0xC0]


def test_the_writer_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="bands must be L or RGB"):
        JpegWriter(io.BytesIO(), 4, 4, "RGBA", quality=90)
    with pytest.raises(ValueError, match="at most 65500"):
        JpegWriter(io.BytesIO(), 70000, 4, "L", quality=90)
    with pytest.raises(ValueError, match="whole MCU rows"):
        JpegWriter(io.BytesIO(), 4, 40, "RGB", quality=90, rows=8)
    with pytest.raises(ValueError, match="does not fit a JPEG segment"):
        JpegWriter(io.BytesIO(), 4, 4, "L", quality=90, exif=b"x" * 70000)
    writer = JpegWriter(io.BytesIO(), 4, 20, "L", quality=90, rows=8)
    with pytest.raises(ValueError, match="does not fit"):
        writer.write(np.zeros((1, 5, 1), np.uint8))
    writer.write(np.zeros((20, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="more rows"):
        writer.write(np.zeros((1, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="has 0 of its 3 rows"):
        JpegWriter(io.BytesIO(), 4, 3, "L", quality=90).close()


def test_block_rows_keep_the_restart_interval_in_16_bits():
    for width in (1, 100, 4000, 65535):
        for bands in ("L", "RGB"):
            rows = jpeg_codec.block_rows(width, bands)
            mcu = jpeg_codec.mcu_rows(bands)
            assert rows % mcu == 0 and rows >= mcu
            assert -(-width // mcu) * (rows // mcu) <= jpeg_codec.MAX_INTERVAL


@pytest.mark.parametrize("bands", ["L", "RGB"])
@pytest.mark.parametrize("strip_rows", [None, 5, 64])
def test_filter_file_streams_jpeg_with_the_pixels_of_the_whole_image_path(
    tmp_path, monkeypatch, bands, strip_rows
):
    monkeypatch.setattr(jpeg_codec, "BLOCK_BYTES", 16 << 10)  # several blocks in a small image
    samples = _photo_like(700, 210, len(bands), 4)
    src = tmp_path / "in.png"
    PILImage.fromarray(samples[:, :, 0] if bands == "L" else samples).save(src)
    kernel = builtin_kernel("gaussian", sigma=2)
    out = tmp_path / "out.jpg"
    report = filter_file(src, out, [kernel], FilterOptions(), strip_rows=strip_rows)
    assert report.streamed and report.format == "JPEG"
    stored = read_samples(src)
    program_out = Stream(stored, report_program(stored, kernel), workers=1).collect()
    whole = encode_samples(program_out, "JPEG")
    np.testing.assert_array_equal(
        imagecodecs.jpeg8_decode(out.read_bytes()), imagecodecs.jpeg8_decode(whole)
    )


def report_program(stored, kernel):
    from convcli.pipeline.engine import plan_program

    return plan_program(stored, [kernel], FilterOptions())


def test_a_failure_mid_jpeg_stream_leaves_no_file_and_keeps_the_old_output(tmp_path, monkeypatch):
    monkeypatch.setattr(jpeg_codec, "BLOCK_BYTES", 16 << 10)
    src = tmp_path / "in.png"
    PILImage.fromarray(RNG.integers(0, 256, (400, 64, 3)).astype(np.uint8)).save(src)
    out = tmp_path / "out.jpg"
    out.write_bytes(b"the previous output")
    calls = []
    original = JpegWriter.write

    def fail_on_the_third(self, strip):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, strip)

    monkeypatch.setattr(JpegWriter, "write", fail_on_the_third)
    with pytest.raises(
        ImageWriteError, match="out.jpg: cannot write \\(No space left on device\\)"
    ):
        filter_file(src, out, [builtin_kernel("box")], strip_rows=16, workers=2)
    assert len(calls) == 3
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.jpg"]


# -- reading ahead -----------------------------------------------------------------------------


def _jpeg_file(tmp_path, h=120, w=90, name="in.jpg", **save) -> str:
    path = tmp_path / name
    PILImage.fromarray(_photo_like(h, w, 3, 5)).save(path, quality=90, **save)
    return str(path)


def test_frame_size_is_the_one_pillow_reads(tmp_path):
    for h, w in [(1, 1), (120, 90), (3000, 17)]:
        path = _jpeg_file(tmp_path, h, w)
        data = Path(path).read_bytes()
        assert jpeg_codec.frame_size(data) == (w, h)
        # fill bytes before a marker are allowed
        filled = data[:2] + b"\xff\xff" + data[2:]
        assert jpeg_codec.frame_size(filled) == (w, h)
    assert jpeg_codec.frame_size(b"not a jpeg") is None
    assert jpeg_codec.frame_size(b"\xff\xd8\xff\xda\x00\x08" + bytes(8)) is None  # scan first
    assert jpeg_codec.frame_size(b"\xff\xd8\xff\xe0\x00\x10") is None  # cut in the header


def test_prefetch_starts_only_for_a_whole_jpeg_within_the_limit(tmp_path, monkeypatch):
    path = _jpeg_file(tmp_path)  # 90x120 = 10,800 pixels
    assert jpeg_codec.prefetch(path) is not None
    assert jpeg_codec.prefetch(path, max_pixels=10_800) is not None
    assert jpeg_codec.prefetch(path, max_pixels=10_799) is None
    assert jpeg_codec.prefetch(path, max_pixels=0) is not None  # no limit
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)  # a caller's own lower limit
    assert jpeg_codec.prefetch(path) is None
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", None)
    assert jpeg_codec.prefetch(path) is not None
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(Path(path).read_bytes()[:-500])
    assert jpeg_codec.prefetch(str(cut)) is None  # no end marker: Pillow's reader refuses
    png = tmp_path / "x.png"
    PILImage.new("RGB", (4, 4)).save(png)
    assert jpeg_codec.prefetch(str(png)) is None
    assert jpeg_codec.prefetch(str(tmp_path / "missing.jpg")) is None
    assert jpeg_codec.prefetch(str(tmp_path)) is None


def test_read_samples_with_a_prefetch_reads_what_it_reads_without(tmp_path):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotated: the reader turns it upright either way
    path = _jpeg_file(tmp_path, 64, 48, exif=exif.tobytes(), dpi=(200, 200))
    ahead = jpeg_codec.prefetch(path)
    assert ahead is not None
    with_ahead = read_samples(path, prefetched=ahead)
    alone = read_samples(path)
    np.testing.assert_array_equal(with_ahead.samples, alone.samples)
    assert with_ahead.samples.shape == (48, 64, 3)
    assert with_ahead.meta == alone.meta
    # another file's prefetch is not used
    other = _jpeg_file(tmp_path, 10, 10, name="other.jpg")
    np.testing.assert_array_equal(
        read_samples(other, prefetched=ahead).samples, read_samples(other).samples
    )


def test_the_pixel_limit_still_refuses_with_a_prefetch(tmp_path):
    from convcli.errors import ImageReadError

    path = _jpeg_file(tmp_path)
    ahead = jpeg_codec.prefetch(path, max_pixels=0)
    with pytest.raises(ImageReadError, match="image too large"):
        read_samples(path, max_pixels=100, prefetched=ahead)


def test_a_damaged_jpeg_gives_the_same_answer_with_a_prefetch(tmp_path):
    from convcli.errors import ImageReadError

    data = bytearray(Path(_jpeg_file(tmp_path, 200, 200)).read_bytes())
    segments, scan = split_segments(bytes(data))
    start = len(data) - 2 - len(scan)
    for i in range(start + 10, start + 400, 3):  # garbage in the scan, the end marker kept
        data[i] = 0xFF if i % 2 else 0xD3
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(bytes(data))

    def outcome(**kw):
        try:
            stored = read_samples(str(bad), **kw)
        except ImageReadError as exc:
            return str(exc)
        return stored.samples.tobytes(), stored.meta.notes

    assert outcome(prefetched=jpeg_codec.prefetch(str(bad))) == outcome()


def test_the_command_reads_ahead_and_writes_what_the_library_writes(tmp_path):
    from click.testing import CliRunner

    from convcli.cli import main

    path = _jpeg_file(tmp_path, 300, 200)
    result = CliRunner().invoke(main, ["blur", path, "-o", str(tmp_path / "cli.jpg")])
    assert result.exit_code == 0, result.output
    filter_file(path, tmp_path / "lib.jpg", [builtin_kernel("gaussian", sigma=2.0)],
                FilterOptions(op="convolve"))  # fmt: skip
    assert (tmp_path / "cli.jpg").read_bytes() == (tmp_path / "lib.jpg").read_bytes()


def _count_used_prefetches(monkeypatch) -> list[str]:
    """The names of the prefetches whose pixels are asked for, in order, from now on."""
    taken: list[str] = []
    pixels = jpeg_codec.Prefetched.pixels

    def counted(self):
        taken.append(self.name)
        return pixels(self)

    monkeypatch.setattr(jpeg_codec.Prefetched, "pixels", counted)
    return taken


@pytest.mark.parametrize(
    ("args", "used"),
    [
        (["blur", "--sigma", "1"], 1),
        (["sharpen"], 1),
        (["edge"], 1),
        (["apply", "-k", "box:size=3"], 1),
        (["blur", "--verify"], 0),  # --verify reads the input itself
        (["blur", "--to-folder"], 0),  # an output folder: batch's engine, which reads its own
    ],
)
def test_each_filter_command_reads_a_jpeg_ahead_when_it_writes_one_file(
    tmp_path, monkeypatch, args, used
):
    from click.testing import CliRunner

    from convcli.cli import main

    taken = _count_used_prefetches(monkeypatch)
    path = _jpeg_file(tmp_path, 120, 80)
    folder = "--to-folder" in args
    out = str(tmp_path / "out") + "/" if folder else str(tmp_path / "out.png")
    args = [a for a in args if a != "--to-folder"]
    result = CliRunner().invoke(main, [args[0], path, *args[1:], "-o", out])
    assert result.exit_code == 0, result.output
    assert taken == [path] * used
    written = list((tmp_path / "out").iterdir()) if folder else [tmp_path / "out.png"]
    assert len(written) == 1 and written[0].is_file()


@pytest.mark.parametrize(("ext", "side"), [(".jpg", 65500), (".webp", 16383)])
def test_an_image_too_wide_for_the_format_is_refused_before_filtering(tmp_path, ext, side):
    from click.testing import CliRunner

    from convcli.cli import main

    src = tmp_path / "wide.png"
    PILImage.new("L", (side + 1, 2)).save(src)
    out = tmp_path / f"out{ext}"
    result = CliRunner().invoke(main, ["blur", str(src), "-o", str(out)])
    assert result.exit_code == 1
    fmt = "JPEG" if ext == ".jpg" else "WEBP"
    assert result.stderr.strip() == (
        f"Error: {out}: {fmt} is at most {side} pixels a side, and the image is "
        f"{side + 1}x2; write .png or .tif instead"
    )
    assert not out.exists()
    ok = CliRunner().invoke(main, ["blur", str(src), "-o", str(tmp_path / "out.png")])
    assert ok.exit_code == 0, ok.output


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 200),
    w=st.integers(1, 200),
    mode=st.sampled_from(["L", "RGB"]),
    subsampling=st.sampled_from([0, 1, 2]),
    quality=st.integers(1, 100),
    optimize=st.booleans(),
    flat=st.booleans(),
)
def test_no_whole_jpeg_is_called_short(h, w, mode, subsampling, quality, optimize, flat):
    """The bound (2 bits a block) holds for every encoding, the tightest included: a flat
    image at quality 1 with optimized Huffman tables codes each block in about 2 bits."""
    arr = np.full((h, w, 3), 77, np.uint8) if flat else _photo_like(h, w, 3, h * w)
    buf = io.BytesIO()
    PILImage.fromarray(arr).convert(mode).save(
        buf, "JPEG", quality=quality, subsampling=subsampling, optimize=optimize
    )
    assert jpeg_codec.coded_data_too_short(buf.getvalue()) is None


def test_a_jpeg_whose_coded_data_ends_early_is_refused(tmp_path):
    from click.testing import CliRunner

    from convcli.cli import main
    from convcli.errors import ImageReadError

    data = Path(_jpeg_file(tmp_path, 2000, 1500)).read_bytes()
    segments, scan = split_segments(data)
    head = data[: len(data) - 2 - len(scan)]
    # the scan's first 100 bytes, then the end marker: decoders fill the rest in grey
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(head + scan[:100] + EOI_MARKER)
    with PILImage.open(cut) as im:
        im.load()  # Pillow says nothing
    reason = jpeg_codec.coded_data_too_short(cut.read_bytes())
    assert reason == (
        "the JPEG's coded data ends early: 100 bytes for 70,500 blocks of 1500x2000 pixels, "
        "which take at least 17,625"
    )
    assert jpeg_codec.prefetch(str(cut)) is None
    with pytest.raises(ImageReadError, match="ends early"):
        read_samples(cut)
    out = tmp_path / "o.png"
    result = CliRunner().invoke(main, ["blur", str(cut), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {cut}: cannot decode image ({reason})"
    assert not out.exists()
    # progressive scans code runs of blocks in a few bits: never judged
    prog = io.BytesIO()
    PILImage.new("RGB", (500, 500), "white").save(prog, "JPEG", progressive=True)
    assert jpeg_codec.coded_data_too_short(prog.getvalue()) is None


EOI_MARKER = b"\xff\xd9"


@pytest.mark.parametrize("kind", ["plain", "metadata", "grey", "cmyk"])
def test_a_jpeg_is_opened_as_pillow_opens_it(kind):
    """image_io._open_pil hands a JPEG straight to Pillow's JPEG reader: the same image
    (format, mode, size, info, EXIF) as PIL.Image.open with convcli's allowed formats."""
    from convcli.image_io import READ_FORMATS, _open_pil

    mode = {"grey": "L", "cmyk": "CMYK"}.get(kind, "RGB")
    image = PILImage.fromarray(_photo_like(24, 40, 4 if mode == "CMYK" else 3, 1)[..., :len(mode)]
                               .squeeze(), mode)  # fmt: skip
    buf = io.BytesIO()
    options = {"quality": 85}
    if kind == "metadata":
        exif = PILImage.Exif()
        exif[0x0112] = 6  # orientation
        exif[0x010F] = "convcli test"
        options.update(icc_profile=b"\x00" * 300, dpi=(300, 300), exif=exif.tobytes())
    image.save(buf, "JPEG", **options)
    data = buf.getvalue()
    with _open_pil(data) as ours, PILImage.open(io.BytesIO(data), formats=READ_FORMATS) as ref:
        assert type(ours) is type(ref)
        assert (ours.format, ours.mode, ours.size) == (ref.format, ref.mode, ref.size)
        assert ours.info == ref.info
        assert dict(ours.getexif()) == dict(ref.getexif())
        assert ours.tobytes() == ref.tobytes()
    if kind == "metadata":
        assert ours.info["icc_profile"] == b"\x00" * 300 and dict(ours.getexif())[0x0112] == 6


def test_reading_a_jpeg_loads_no_other_image_plugin(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "in.jpg"
    PILImage.fromarray(_photo_like(16, 16, 3, 2)).save(src, quality=90)
    code = (
        "import sys; from convcli.image_io import read_samples\n"
        f"read_samples({str(src)!r}, lazy=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith('PIL.') and m.endswith('Plugin')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['PIL.JpegImagePlugin']"


def test_a_damaged_jpeg_header_still_gets_pillows_error(tmp_path):
    from convcli.errors import ImageReadError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\xff" * 40)
    with pytest.raises(ImageReadError, match=r"bad\.jpg"):
        read_samples(bad, lazy=False)


@pytest.mark.parametrize(
    ("words", "found"),
    [
        (["blur", "IN", "-o", "out.jpg"], "IN"),
        (["blur", "--sigma", "3", "IN", "-o", "OUT"], "IN"),  # -o's value is not the input
        (["apply", "-k", "box:size=3", "--output", "OUT", "IN"], "IN"),
        (["edge", "IN", "--output=out.png"], "IN"),
        (["sharpen", "-o", "OUT", "missing.jpg"], None),  # no such file
        (["blur", "IN", "OUT"], None),  # two files: batch's engine, or an error
        (["blur", "IN", "-o", "out.jpg", "--verify"], None),  # --verify reads the input itself
        (["blur", "IN", "-o", "out.jpg", "--max-pixels", "0"], None),  # its own limit
        (["blur", "IN", "--max-pixels=0"], None),
        (["blur", "IN", "--help"], None),
        (["blur", "--", "IN"], None),
        (["compare", "IN", "-k", "emboss"], None),  # not a command that reads ahead
        (["blur"], None),
        ([], None),
    ],
)
def test_the_command_lines_input_is_found_before_click_parses_it(tmp_path, words, found):
    from convcli.__main__ import early_input

    (tmp_path / "IN").write_bytes(b"x")
    (tmp_path / "OUT").write_bytes(b"x")
    argv = ["convcli"] + [str(tmp_path / w) if w in ("IN", "OUT") else w for w in words]
    assert early_input(argv) == (str(tmp_path / found) if found else None)


def _run_command(monkeypatch, argv):
    import convcli.__main__ as entry

    monkeypatch.setattr(sys, "argv", ["convcli", *argv])
    with pytest.raises(SystemExit) as ended:
        entry.run()
    return ended.value.code


def test_the_command_decodes_its_jpeg_from_the_start_and_writes_what_the_library_writes(
    tmp_path, monkeypatch
):
    taken = _count_used_prefetches(monkeypatch)
    started: list[str] = []
    init = jpeg_codec.Prefetched.__init__

    def counted_init(self, name, data):
        started.append(name)
        init(self, name, data)

    monkeypatch.setattr(jpeg_codec.Prefetched, "__init__", counted_init)
    path = _jpeg_file(tmp_path, 300, 200)
    out = str(tmp_path / "cli.jpg")
    assert _run_command(monkeypatch, ["blur", "--sigma", "1.5", path, "-o", out]) == 0
    assert started == [path] and taken == [path]  # one decoding, begun by run, used
    assert jpeg_codec._early is None
    filter_file(path, tmp_path / "lib.jpg", [builtin_kernel("gaussian", sigma=1.5)],
                FilterOptions(op="convolve"))  # fmt: skip
    assert (tmp_path / "cli.jpg").read_bytes() == (tmp_path / "lib.jpg").read_bytes()


def test_an_early_decoding_the_command_does_not_use_is_dropped(tmp_path, monkeypatch):
    taken = _count_used_prefetches(monkeypatch)
    path = _jpeg_file(tmp_path, 120, 80)
    folder = str(tmp_path / "out") + "/"  # an output folder: batch's engine reads the file
    assert _run_command(monkeypatch, ["blur", path, "-o", folder]) == 0
    assert taken == [] and jpeg_codec._early is None
    assert [p.name for p in (tmp_path / "out").iterdir()] == [os.path.basename(path)]
    # nor is one of another file, or one under another pixel limit
    jpeg_codec.start_early(path)
    assert jpeg_codec.take_early(path + "x") is None and jpeg_codec._early is None
    jpeg_codec.start_early(path)
    assert jpeg_codec.take_early(path, max_pixels=0) is None
    jpeg_codec.start_early(path)
    assert jpeg_codec.take_early(path) is not None


def test_the_early_decoding_starts_before_click_pillow_or_the_thread_pool_are_loaded(tmp_path):
    import subprocess

    path = _jpeg_file(tmp_path, 64, 48)
    code = (
        "import sys; from convcli import jpeg_codec\n"
        f"jpeg_codec.start_early({path!r})\n"
        "loaded = [m for m in ('click', 'PIL', 'concurrent.futures', 'convcli.image_io',\n"
        "          'convcli.pipeline') if m in sys.modules]\n"
        f"early = jpeg_codec.take_early({path!r})\n"
        "print(loaded, early.pixels().shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] (64, 48, 3)"
