"""How the files in sample_images/ were made (provenance; not run by CI).

    pip download --no-deps -d /tmp/skw scikit-image==0.26.0
    python -m zipfile -e /tmp/skw/scikit_image-0.26.0-*.whl /tmp/skw/x
    python sample_images/make_samples.py /tmp/skw/x/skimage/data

Each source is a public-domain or CC0 photograph shipped in scikit-image's wheel
(see README.md beside this script for the licence statements).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from convcli.image_io import from_array, write_image

OUT = Path(__file__).resolve().parent


def main(data: Path) -> None:
    # 1. RGB photo, JPEG
    with Image.open(data / "coffee.png") as im:
        im.convert("RGB").save(OUT / "coffee.jpg", quality=90)
    # 2. greyscale photo, 8-bit PNG, as shipped
    with Image.open(data / "camera.png") as im:
        im.convert("L").save(OUT / "camera.png", optimize=True)
    # 3. RGBA with real transparency: the cat of "chelsea" inside a feathered ellipse
    with Image.open(data / "chelsea.png") as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
        icc = im.info.get("icc_profile")
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot((x - 0.52 * w) / (0.36 * w), (y - 0.55 * h) / (0.46 * h))
    alpha = np.clip((1.08 - r) / 0.16, 0, 1)  # opaque inside, 16% soft edge, clear outside
    rgba = np.dstack([rgb, alpha * 255]).round().astype(np.uint8)
    Image.fromarray(rgba).save(OUT / "chelsea_cutout.png", optimize=True, icc_profile=icc)
    # 4. 16-bit greyscale: luminance of "astronaut" computed in float, kept at 16 bits
    with Image.open(data / "astronaut.png") as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float64) / 255
    lum = a @ np.array([0.2126, 0.7152, 0.0722])
    Image.fromarray(np.rint(lum * 65535).astype(np.uint16)).save(OUT / "astronaut16.png")
    # 5. 16-bit RGB: "rocket" downsized in float (Lanczos per channel), kept at 16 bits
    with Image.open(data / "rocket.jpg") as im:
        small = [
            np.asarray(ch.convert("F").resize((400, 267), Image.Resampling.LANCZOS))
            for ch in im.convert("RGB").split()
        ]
    rocket16 = np.clip(np.dstack(small) / 255, 0, 1).astype(np.float32)
    write_image(from_array(rocket16, depth="16"), OUT / "rocket16.png")
    # 6. EXIF orientation 6 with an ICC profile: "rocket" stored rotated 90 degrees
    # clockwise-compensated, so a viewer (and convcli) must rotate it back on load
    with Image.open(data / "rocket.jpg") as im:
        icc = im.info.get("icc_profile")
        stored = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        stored.save(
            OUT / "rocket_exif_rotated.jpg",
            quality=90,
            exif=exif.tobytes(),
            icc_profile=icc,
            dpi=(150, 150),
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
