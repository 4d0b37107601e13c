"""The side-by-side panel of ``convcli compare``, drawn with Pillow.

Layout, left to right: input | convolution | correlation | |conv - corr| heat map
(amplified so that the 99.5th percentile of the difference is full scale, with a
scale bar), and below
them the kernel as an annotated grid (origin outlined) beside the verdict and
the numbers.  Tiles are at most ``TILE`` pixels on their long side: large
inputs are shown downscaled (the numbers are always computed at full
resolution), small ones enlarged with nearest-neighbour so pixels stay visible.

Signed results are mapped for display by the same range policies as
``convcli apply`` (``clip``, ``abs``, ``offset``, ``rescale``).  This is the
second module that imports PIL (image_io reads and writes files; this one only
draws).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from .compare import Comparison
from .process import apply_range

TILE = 320
MARGIN = 12
LABEL_H = 22
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
# anchor colours of the heat map (black -> purple -> orange -> yellow), as in 'inferno'
_HEAT = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64
)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def heat(values: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Map values in [0, 1] to RGB through the heat-map colours."""
    v = np.clip(values, 0.0, 1.0) * (len(_HEAT) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_HEAT) - 2)
    frac = (v - lo)[..., None]
    rgb = _HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac
    return np.rint(rgb).astype(np.uint8)


def _to_rgb8(pixels: NDArray[np.floating]) -> NDArray[np.uint8]:
    """(H, W, C) values in [0, 1] to displayable RGB (grey repeated, alpha dropped)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    colour = pixels[:, :, :3] if channels >= 3 else pixels[:, :, :1]
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _tile(rgb: NDArray[np.uint8], size: tuple[int, int]) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    if im.size == size:
        return im
    smaller = size[0] < im.size[0]
    resample = Image.Resampling.LANCZOS if smaller else Image.Resampling.NEAREST
    return im.resize(size, resample)


def tile_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of a panel tile for an image, long side TILE, aspect kept."""
    scale = TILE / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def render_panel(
    result: Comparison, source: NDArray[np.floating], *, display_policy: str = "clip"
) -> Image.Image:
    """Draw the comparison as one RGB image."""
    h, w = source.shape[:2]
    tw, th = tile_size(h, w)
    shown = [
        ("input", _to_rgb8(source)),
        ("convolution", _to_rgb8(apply_range(result.conv, display_policy, "8")[0])),
        ("correlation", _to_rgb8(apply_range(result.corr, display_policy, "8")[0])),
    ]
    diff = np.abs(result.conv.astype(np.float64) - result.corr.astype(np.float64))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    peak = float(diff.max())
    # full scale at the 99.5th percentile, so that a few extreme pixels do not hide the rest
    scale = float(np.percentile(diff, 99.5)) if peak > 0 else 0.0
    scale = scale if scale > 0 else (peak if peak > 0 else 1.0)
    gain = 1.0 / scale
    shown.append((f"|conv - corr| x{gain:.3g}", heat(diff * gain)))

    kernel = result.kernel
    cell = max(1, min(40, 260 // max(kernel.shape)))  # numbers are written when cells fit them
    grid_w = cell * kernel.shape[1]
    grid_h = cell * kernel.shape[0]
    text_lines = _text_lines(result, peak, scale)
    body_h = max(grid_h, 18 * len(text_lines)) + 2 * MARGIN
    width = MARGIN + 4 * (tw + MARGIN)
    height = MARGIN + LABEL_H + th + 28 + body_h
    panel = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    font = _font(14)
    small = _font(11)
    for i, (label, rgb) in enumerate(shown):
        x = MARGIN + i * (tw + MARGIN)
        draw.text((x, MARGIN), label, fill=INK, font=font)
        panel.paste(_tile(rgb, (tw, th)), (x, MARGIN + LABEL_H))
    # scale bar under the heat map
    x = MARGIN + 3 * (tw + MARGIN)
    y = MARGIN + LABEL_H + th + 4
    bar = heat(np.linspace(0, 1, tw)[None, :].repeat(8, axis=0))
    panel.paste(Image.fromarray(bar, "RGB"), (x, y))
    draw.text((x, y + 9), "0", fill=INK, font=small)
    label = f"{scale:.3g}" + ("+" if scale < peak else "")
    draw.text((x + tw - 7 * len(label), y + 9), label, fill=INK, font=small)

    top = MARGIN + LABEL_H + th + 28 + MARGIN
    _draw_kernel(draw, kernel, MARGIN, top, cell, small)
    tx = MARGIN + grid_w + 2 * MARGIN
    for j, line in enumerate(text_lines):
        draw.text((tx, top + 18 * j), line, fill=INK, font=font if j == 0 else small)
    return panel


def _draw_kernel(draw: ImageDraw.ImageDraw, kernel, x0: int, y0: int, cell: int, font) -> None:
    weights = kernel.weights
    top = float(np.abs(weights).max()) or 1.0
    for r in range(weights.shape[0]):
        for c in range(weights.shape[1]):
            v = float(weights[r, c]) / top
            shade = int(255 - 150 * abs(v))
            fill = (255, shade, shade) if v < 0 else (shade, shade, 255)
            box = (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell - 1, y0 + (r + 1) * cell - 1)
            draw.rectangle(box, fill=fill, outline=(160, 160, 160) if cell >= 6 else None)
            if cell >= 24:
                text = f"{weights[r, c]:.3g}"
                draw.text((box[0] + 2, box[1] + cell // 3), text, fill=INK, font=font)
    orow, ocol = kernel.origin
    box = (
        x0 + ocol * cell,
        y0 + orow * cell,
        x0 + (ocol + 1) * cell - 1,
        y0 + (orow + 1) * cell - 1,
    )
    draw.rectangle(box, outline=(0, 0, 0), width=2 if cell >= 6 else 1)


def _text_lines(result: Comparison, peak: float, scale: float) -> list[str]:
    k = result.kernel
    s1, s2 = result.conv_vs_corr, result.conv_vs_flipped_corr
    return [
        result.explanation,
        f"kernel {k.name}: {k.shape[0]}x{k.shape[1]}, origin {k.origin}, sum {k.sum:.4g}, "
        f"{k.symmetry}, {'separable' if k.separable else f'rank {k.rank}'}",
        f"backend {result.plan.backend} ({result.plan.method}), boundary {result.mode}",
        f"conv vs corr: max {s1.max_abs:.3g}, mean {s1.mean_abs:.3g}, "
        f"{s1.differing_pixels} px ({s1.differing_percent:.2f}%) differ, PSNR {s1.psnr:.1f} dB",
        f"conv vs correlate(rot180 K): max {s2.max_abs:.3g}, {s2.differing_pixels} px differ",
        (
            f"heat map: |conv - corr| per pixel (max over channels), full scale {scale:.3g} "
            f"(99.5th percentile; max {peak:.3g})"
            if peak > 0
            else "heat map: |conv - corr| is 0 at every pixel"
        ),
    ]


def panel_image(result: Comparison, source: NDArray[np.floating], display_policy: str):
    """The panel as a convcli :class:`~convcli.image_io.Image` (8-bit RGB), ready to write."""
    from .image_io import from_array

    rgb = np.asarray(render_panel(result, source, display_policy=display_policy))
    return from_array(rgb.astype(np.float32) / 255, depth="8")


def result_images(result: Comparison, like, display_policy: str) -> dict[str, object]:
    """``convolve``, ``correlate`` and ``correlate-rot180`` as images shaped like ``like``.

    Values are mapped into the range by ``display_policy`` and keep ``like``'s
    bands and depth (float sources stay unmapped floats).
    """
    from dataclasses import replace

    out = {}
    for name, values in (
        ("convolve", result.conv),
        ("correlate", result.corr),
        ("correlate-rot180", result.flip),
    ):
        if like.depth == "float":
            mapped = np.asarray(values, dtype=np.float32)
        else:
            mapped = apply_range(np.asarray(values, dtype=np.float32), display_policy, like.depth)[
                0
            ]
        out[name] = replace(like, pixels=np.ascontiguousarray(mapped, dtype=np.float32))
    return out


def kernel_picture(kernel):
    """The kernel as an enlarged, annotated picture (convcli Image, 8-bit RGB).

    Cells are blue for positive and red for negative weights, deeper for larger
    magnitudes; the origin is outlined; values are written when cells fit them.
    """
    from .image_io import from_array

    rows, cols = kernel.shape
    cell = max(4, min(56, 720 // max(rows, cols)))
    title = f"{kernel.name}: {rows}x{cols}, origin {kernel.origin}, sum {kernel.sum:.4g}"
    title_font = _font(13)
    text_w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=title_font))
    width = max(cols * cell, text_w) + 2 * MARGIN
    height = rows * cell + 2 * MARGIN + LABEL_H
    pic = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(pic)
    font = _font(12 if cell >= 40 else 10)
    draw.text((MARGIN, MARGIN // 2), title, fill=INK, font=title_font)
    _draw_kernel(draw, kernel, MARGIN, MARGIN + LABEL_H, cell, font)
    return from_array(np.asarray(pic).astype(np.float32) / 255, depth="8")
