"""Write the seed corpus of hostile inputs beside this script (run it to regenerate).

Each file is a small reproducer of a finding of the hardening audit; ``CASES.txt`` lists
what convcli must say about it (tests/test_hardening.py reads it).  Large inputs (a 59 MiB
one-row kernel, a 179-MP TIFF) are made by the tests themselves, not stored here.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from numpy.lib import format as npf
from PIL import Image

HERE = Path(__file__).resolve().parent


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height 8-bit grey pixels, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A baseline JPEG whose frame header declares width x height, with 10 bytes of coded
    data and the end marker: decoders fill the image in grey and say nothing."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "JPEG")
    data = buf.getvalue()
    sof = data.index(b"\xff\xc0")
    data = data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]
    sos = data.index(b"\xff\xda")
    end = sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]
    return data[:end] + bytes(10) + b"\xff\xd9"


def tiff_declaring(width: int, height: int) -> bytes:
    """A tiny baseline TIFF whose header declares width x height RGB 8-bit, one strip."""
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
        (262, 3, 1, 2), (273, 4, 1, 8), (277, 3, 1, 3), (278, 4, 1, height),
        (279, 4, 1, width * height * 3 & 0xFFFFFFFF),
    ]  # fmt: skip
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8 + 16) + b"\x00" * 16 + ifd


def main() -> None:
    rgb = (np.arange(8 * 10 * 3) % 251).astype(np.uint8).reshape(8, 10, 3)
    files: dict[str, bytes] = {}
    # 1: an EPS (Pillow would run Ghostscript on it) named .jpg; PSD, PCX, ICO named .png
    files["eps_named.jpg"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    for fmt, name in (("PCX", "pcx_named.png"), ("ICO", "ico_named.png"), ("SGI", "sgi_named.tif")):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, fmt)
        files[name] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "GIF")
    files["gif_named.png"] = buf.getvalue()  # inside the allowlist: a warning, then filtered
    # 2: pixel limits, checked on the declared size before decoding
    files["bomb_above_limit.png"] = png_declaring(9459, 9460)  # 89,482,140 pixels: just above
    files["bomb_declared.tif"] = tiff_declaring(14000, 12800)  # 179.2 MP in a tiny file
    # under the limit but no data: refused before the 243 MB output is allocated
    files["no_data_81mp.tif"] = tiff_declaring(9000, 9000)
    files["no_data_81mp.png"] = png_declaring(9000, 9000)
    files["no_data_81mp.jpg"] = jpeg_declaring(9000, 9000)
    # 3: NaN and infinity in a float TIFF
    floats = np.full((6, 7), 0.5, np.float32)
    floats[1, 2], floats[3, 4] = np.nan, np.inf
    buf = io.BytesIO()
    tifffile.imwrite(buf, floats)
    files["nan_inf.tif"] = buf.getvalue()
    # 4: a WebP cut short
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "WEBP", lossless=True)
    files["cut.webp"] = buf.getvalue()[: len(buf.getvalue()) // 2]
    # 5-8: kernels
    files["exponent.txt"] = b"1 2 1e999999999/1\n"  # 18 bytes; Fraction would compute 10**999999999
    files["decimal_comma.txt"] = b"0,25 0,5 0,25\n"
    files["im_size_4301_digits.im"] = b"1" * 4301 + b"x3:1,2,3\n"
    good = io.BytesIO()
    np.save(good, np.ones((3, 3)))
    data = good.getvalue()
    files["bad_header.npy"] = (
        data[:10] + b"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 3" + data[60:]
    )
    head = io.BytesIO()
    npf.write_array_header_1_0(
        head, {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)}
    )
    files["huge_header.npy"] = head.getvalue() + b"\x00" * 64
    for name, payload in files.items():
        (HERE / name).write_bytes(payload)
        print(f"{name}: {len(payload)} bytes")


if __name__ == "__main__":
    main()
