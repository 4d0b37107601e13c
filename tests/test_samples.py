"""Every shipped sample image is read, filtered and written back at its own depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convcli.image_io import read_image, write_image
from convcli.kernels import builtin_kernel
from convcli.process import FilterOptions, filter_image

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def test_the_required_kinds_of_sample_are_shipped():
    kinds = {(read_image(p).bands, read_image(p).depth) for p in FILES}
    assert ("RGB", "8") in kinds
    assert ("L", "8") in kinds
    assert ("RGBA", "8") in kinds
    assert any(depth == "16" for _, depth in kinds)
    total = sum(p.stat().st_size for p in SAMPLES.iterdir())
    assert total <= 3.5 * 2**20


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_sample_round_trip_through_a_blur(path, tmp_path):
    image = read_image(path)
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 3
    assert image.pixels.shape[2] == len(image.bands)
    assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
    blurred, report = filter_image(image, [builtin_kernel("gaussian", sigma=1.5)])
    assert report.out_of_range == 0  # a normalized blur of [0, 1] data stays in range
    out = tmp_path / (path.stem + ".png")
    write_image(blurred, out)
    again = read_image(out)
    assert again.bands == image.bands and again.depth == image.depth
    assert again.pixels.shape == image.pixels.shape
    step = 1 / 255 if image.depth == "8" else 1 / 65535
    assert np.abs(again.pixels - blurred.pixels).max() <= step / 2 + 1e-6

    # blurring smooths: neighbouring-pixel differences shrink
    def roughness(a):
        return float(np.abs(np.diff(a[..., 0], axis=1)).mean())

    assert roughness(again.pixels) < roughness(image.pixels)


def test_sample_edges_with_both_backends_agree_within_one_level():
    path = next(p for p in FILES if read_image(p).bands == "RGB")
    image = read_image(path)
    k = builtin_kernel("gaussian", sigma=4)
    a, _ = filter_image(image, [k], FilterOptions(backend="direct"))
    b, _ = filter_image(image, [k], FilterOptions(backend="fft"))
    qa = np.rint(a.pixels * 255)
    qb = np.rint(b.pixels * 255)
    assert np.abs(qa - qb).max() <= 1
