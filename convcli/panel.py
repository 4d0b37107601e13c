"""The side-by-side panel of ``convcli compare``, drawn with Pillow.

Layout, left to right: input | convolution | correlation | |conv - corr| heat map
(amplified so that the 99.5th percentile of the difference is full scale, with a
scale bar), and below them the kernel as an annotated grid (origin outlined)
beside the verdict and the numbers.

Tiles: the image is shown with its aspect kept and its long side ``TILE``
pixels (large inputs downscaled, small ones enlarged with nearest-neighbour so
pixels stay visible), letterboxed in a tile box whose sides are at least
``MIN_SIDE`` (and wide enough for the label), so that an extreme aspect ratio
still gives a tile, not a sliver.  Only the display is resized: the numbers
are always computed on the data at full resolution.

Signed results are mapped for display by the same range policies as
``convcli apply`` (``clip``, ``abs``, ``offset``, ``rescale``), and a text line
names the policy.  Images with alpha are drawn composited over a checkerboard,
so transparent areas look transparent; the heat map shows the difference of
what is visible (composites over black and over white, see
:mod:`convcli.compare`).  This is the second module that imports PIL
(image_io reads and writes files; this one only draws).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from .compare import (
    _BLOCK_ROWS,
    Comparison,
    _colour_bounds,
    difference_map,
    straight,
    visible_difference,
)
from .process import apply_range

if TYPE_CHECKING:  # pragma: no cover
    from .image_io import Image as ConvImage
    from .image_io import Samples
    from .kernels import Kernel

TILE = 320
MIN_SIDE = 96  #: shortest side of a tile box: thinner images are letterboxed in it
MARGIN = 12
LABEL_H = 22
LINE_H = 18
BAR_H = 28  #: the strip under the tiles that holds the heat map's scale bar
CHECKER = 8  #: side of the checkerboard squares behind transparent pixels
BACKGROUND = (255, 255, 255)
PAD = (236, 236, 236)  #: the letterbox around an image inside its tile box
CHECKER_COLOURS = ((255, 255, 255), (204, 204, 204))
INK = (20, 20, 20)
FRAME = (170, 170, 170)
# anchor colours of the heat map (black -> purple -> orange -> yellow), as in 'inferno'
_HEAT = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64
)

#: One line per range policy: how signed results are shown.
POLICY_TEXT = {
    "clip": "results clipped to [0, 1] ('clip'): negative values black, above 1 white",
    "abs": "|result| clipped to [0, 1] ('abs'): the sign is not shown",
    "offset": "signed results shown with 'offset': result + 0.5, so 0 = mid-grey, then clipped",
    "rescale": "each result stretched from its own min..max to 0..1 ('rescale')",
}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def heat(values: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Map values in [0, 1] to RGB through the heat-map colours (in bands of rows)."""
    values = np.asarray(values)
    out = np.empty(values.shape + (3,), np.uint8)
    flat_in = values.reshape(-1)
    flat_out = out.reshape(-1, 3)
    step = 1 << 16
    for start in range(0, flat_in.size, step):
        v = np.clip(flat_in[start : start + step], 0.0, 1.0) * (len(_HEAT) - 1)
        lo = np.floor(v).astype(int).clip(0, len(_HEAT) - 2)
        frac = (v - lo)[..., None]
        rgb = _HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac
        flat_out[start : start + step] = np.rint(rgb)
    return out


def _to_rgba8(
    colour: NDArray[np.floating], alpha: NDArray[np.floating] | None
) -> NDArray[np.uint8]:
    """(H, W, 1 or 3) colour and (H, W, 1) alpha in [0, 1] to RGBA bytes (grey repeated)."""
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour[:, :, :3]
    a = np.ones(rgb.shape[:2] + (1,)) if alpha is None else alpha
    rgba = np.concatenate([rgb, a], axis=2)
    return np.rint(np.clip(rgba, 0, 1) * 255).astype(np.uint8)


def _opaque(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """RGB bytes with an opaque alpha channel."""
    out = np.full(rgb.shape[:2] + (4,), 255, np.uint8)
    out[:, :, :3] = rgb
    return out


def display_rgba(
    values: NDArray[np.floating],
    policy: str | None,
    alpha: str | None,
    *,
    stretch: tuple[float, float] | None = None,
) -> NDArray[np.uint8]:
    """A source (``policy`` None: shown clipped) or a raw result as RGBA bytes for display.

    ``alpha``: None when there is no alpha channel, else how it was filtered
    (``premultiply`` or ``plain``; a source's colour is ``plain``, straight).  Converted
    in bands of rows (``rescale`` stretches by the whole result's bounds), so the float64
    temporaries stay small.  ``stretch``: for ``rescale``, the whole result's colour bounds
    when ``values`` are some of its rows.
    """
    arr = np.asarray(values)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if policy == "rescale" and stretch is None:
        stretch = _colour_bounds(arr, alpha)
    out = np.empty(arr.shape[:2] + (4,), np.uint8)
    for y in range(0, arr.shape[0], _BLOCK_ROWS):
        block = np.asarray(arr[y : y + _BLOCK_ROWS], np.float64)
        colour, a = (block, None) if alpha is None else straight(block, alpha)
        if policy is not None:
            colour = apply_range(colour, policy, "8", stretch=stretch)[0]
        out[y : y + _BLOCK_ROWS] = _to_rgba8(colour, a)
    return out


def checkerboard(size: tuple[int, int]) -> Image.Image:
    """An RGB checkerboard of ``CHECKER``-pixel squares, ``size`` = (width, height)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    odd = ((yy // CHECKER + xx // CHECKER) % 2).astype(bool)
    light, dark = (np.array(c, np.uint8) for c in CHECKER_COLOURS)
    return Image.fromarray(np.where(odd[..., None], dark, light), "RGB")


def _tile(rgba: NDArray[np.uint8], content: tuple[int, int], box: tuple[int, int]) -> Image.Image:
    """The image resized to ``content``, over a checkerboard, letterboxed in ``box``."""
    im = Image.fromarray(rgba, "RGBA")
    if im.size != content:
        smaller = content[0] < im.size[0]
        resample = Image.Resampling.LANCZOS if smaller else Image.Resampling.NEAREST
        im = im.resize(content, resample)  # Pillow resamples RGBA premultiplied
    shown = Image.alpha_composite(checkerboard(content).convert("RGBA"), im).convert("RGB")
    tile = Image.new("RGB", box, PAD)
    tile.paste(shown, ((box[0] - content[0]) // 2, (box[1] - content[1]) // 2))
    return tile


def tile_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of the image shown in a tile: long side TILE, aspect kept."""
    scale = TILE / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def tile_box(height: int, width: int) -> tuple[int, int]:
    """(width, height) of a tile box: the shown image, each side at least MIN_SIDE."""
    w, h = tile_size(height, width)
    return max(w, MIN_SIDE), max(h, MIN_SIDE)


@dataclass(frozen=True)
class PanelLayout:
    """Where everything goes in the panel (pixels; boxes are ``(x0, y0, x1, y1)``, exclusive)."""

    size: tuple[int, int]  #: (width, height) of the panel
    content: tuple[int, int]  #: (width, height) of the image inside a tile
    box: tuple[int, int]  #: (width, height) of a tile box (labels fit above it)
    tiles: tuple[tuple[int, int], ...]  #: top-left corners of the four tile boxes
    offset: tuple[int, int]  #: top-left of the image inside its tile box
    grid: tuple[int, int, int, int]  #: the kernel grid
    cell: int  #: side of a kernel cell
    text_at: tuple[int, int]  #: top-left of the text lines
    labels: tuple[str, ...]  #: the four tile labels
    lines: tuple[str, ...]  #: the text lines (the first is the verdict)
    scale: float  #: heat-map full scale (the 99.5th percentile of the difference)
    peak: float  #: largest visible difference

    def content_box(self, i: int) -> tuple[int, int, int, int]:
        """The image inside tile ``i`` (0 input, 1 convolution, 2 correlation, 3 heat map)."""
        x, y = self.tiles[i]
        x0, y0 = x + self.offset[0], y + self.offset[1]
        return x0, y0, x0 + self.content[0], y0 + self.content[1]


def _plan(
    result: Comparison,
    source: NDArray[np.floating],
    display_policy: str,
    diff: NDArray[np.float64] | None = None,
) -> tuple[PanelLayout, NDArray[np.float64]]:
    diff = visible_difference(result) if diff is None else diff
    peak = float(diff.max()) if diff.size else 0.0
    # full scale at the 99.5th percentile, so that a few extreme pixels do not hide the rest
    scale = float(np.percentile(diff, 99.5)) if peak > 0 else 0.0
    scale = scale if scale > 0 else (peak if peak > 0 else 1.0)
    labels = ("input", "convolution", "correlation", f"|conv - corr| x{1.0 / scale:.3g}")
    lines = tuple(_text_lines(result, peak, scale, display_policy))

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font, small = _font(14), _font(11)
    label_w = max(int(measure.textlength(t, font=font)) for t in labels) + 4
    cw, ch = tile_size(*source.shape[:2])
    bw, bh = tile_box(*source.shape[:2])
    bw = max(bw, label_w)
    tiles = tuple((MARGIN + i * (bw + MARGIN), MARGIN + LABEL_H) for i in range(4))

    cell = max(1, min(40, 260 // max(result.kernel.shape)))  # numbers written when they fit
    grid_w, grid_h = cell * result.kernel.shape[1], cell * result.kernel.shape[0]
    top = MARGIN + LABEL_H + bh + BAR_H + MARGIN
    text_x = MARGIN + grid_w + 2 * MARGIN
    text_w = max(
        int(measure.textlength(t, font=font if j == 0 else small)) for j, t in enumerate(lines)
    )
    width = max(MARGIN + 4 * (bw + MARGIN), text_x + text_w + MARGIN)
    height = top + max(grid_h, LINE_H * len(lines)) + MARGIN
    layout = PanelLayout(
        size=(width, height),
        content=(cw, ch),
        box=(bw, bh),
        tiles=tiles,
        offset=((bw - cw) // 2, (bh - ch) // 2),
        grid=(MARGIN, top, MARGIN + grid_w, top + grid_h),
        cell=cell,
        text_at=(text_x, top),
        labels=labels,
        lines=lines,
        scale=scale,
        peak=peak,
    )
    return layout, diff


def panel_layout(
    result: Comparison, source: NDArray[np.floating], display_policy: str | None = None
) -> PanelLayout:
    """The geometry :func:`render_panel` draws with (for checks and tests)."""
    return _plan(result, source, display_policy or result.range_policy)[0]


def render_panel(
    result: Comparison, source: NDArray[np.floating], *, display_policy: str | None = None
) -> Image.Image:
    """Draw the comparison as one RGB image (``display_policy``: default the result's)."""
    policy = display_policy or result.range_policy
    layout, diff = _plan(result, source, policy)
    source_alpha = None if result.alpha is None else "plain"  # a source's colour is straight
    shown = [
        display_rgba(source, None, source_alpha),
        display_rgba(result.conv, policy, result.alpha),
        display_rgba(result.corr, policy, result.alpha),
    ]
    return _draw(result, layout, diff, shown)


class PanelViews:
    """What the panel shows, filled strip by strip: pass it as ``visit`` to
    :func:`convcli.compare.compare_samples`, then :meth:`render`.  Holds the three tiles as
    full-size RGBA bytes and the difference map (float64), not the float results."""

    def __init__(self, stored: Samples, policy: str, alpha: str) -> None:
        height, width = stored.height, stored.width
        self.shape = (height, width, stored.channels)
        self.policy = policy
        self.alpha = alpha if stored.channels in (2, 4) else None
        self.shown = [np.empty((height, width, 4), np.uint8) for _ in range(3)]
        self.diff = np.empty((height, width), np.float64)

    def __call__(self, start, source, conv, corr, conv_bounds, corr_bounds) -> None:
        rows = slice(start, start + conv.shape[0])
        source_alpha = None if self.alpha is None else "plain"  # a source is straight
        self.shown[0][rows] = display_rgba(source, None, source_alpha)
        self.shown[1][rows] = display_rgba(conv, self.policy, self.alpha, stretch=conv_bounds)
        self.shown[2][rows] = display_rgba(corr, self.policy, self.alpha, stretch=corr_bounds)
        self.diff[rows] = difference_map(conv, corr, self.alpha)

    def render(self, result: Comparison) -> Image.Image:
        """The panel of ``result`` (the comparison these views were filled by)."""
        source = np.empty(self.shape[:2] + (0,), np.float32)  # only its shape is read
        layout, diff = _plan(result, source, self.policy, self.diff)
        return _draw(result, layout, diff, list(self.shown))

    def image(self, result: Comparison) -> ConvImage:
        """:meth:`render` as a convcli Image (8-bit RGB), ready to write."""
        from .image_io import from_array

        rgb = np.asarray(self.render(result))
        return from_array(rgb.astype(np.float32) / 255, depth="8")


def _draw(
    result: Comparison,
    layout: PanelLayout,
    diff: NDArray[np.float64],
    shown: list[NDArray[np.uint8]],
) -> Image.Image:
    shown = [*shown, _opaque(heat(diff / layout.scale))]
    panel = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(panel)
    font = _font(14)
    small = _font(11)
    for (x, y), label, rgba in zip(layout.tiles, layout.labels, shown, strict=True):
        draw.text((x, MARGIN), label, fill=INK, font=font)
        panel.paste(_tile(rgba, layout.content, layout.box), (x, y))
        # a frame just outside the box, so that white tiles stand out from the background
        draw.rectangle((x - 1, y - 1, x + layout.box[0], y + layout.box[1]), outline=FRAME)
    # scale bar under the heat map
    bw, bh = layout.box
    x, y = layout.tiles[3][0], layout.tiles[3][1] + bh + 5
    bar = heat(np.linspace(0, 1, bw)[None, :].repeat(8, axis=0))
    panel.paste(Image.fromarray(bar, "RGB"), (x, y))
    draw.text((x, y + 9), "0", fill=INK, font=small)
    label = f"{layout.scale:.3g}" + ("+" if layout.scale < layout.peak else "")
    draw.text((x + bw - 7 * len(label), y + 9), label, fill=INK, font=small)

    _draw_kernel(draw, result.kernel, layout.grid[0], layout.grid[1], layout.cell, small)
    tx, ty = layout.text_at
    for j, line in enumerate(layout.lines):
        draw.text((tx, ty + LINE_H * j), line, fill=INK, font=font if j == 0 else small)
    return panel


def _fitting_number(
    draw: ImageDraw.ImageDraw,
    value: float,
    width: float,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> str:
    """``value`` with as many significant digits (3 down to 1) as fit ``width`` pixels;
    "" when not even one does (the cell's colour still shows it)."""
    for digits in (3, 2, 1):
        text = f"{value:.{digits}g}"
        if draw.textlength(text, font=font) <= width:
            return text
    return ""


def _draw_kernel(
    draw: ImageDraw.ImageDraw,
    kernel: Kernel,
    x0: int,
    y0: int,
    cell: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
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
                text = _fitting_number(draw, float(weights[r, c]), cell - 4, font)
                if text:
                    draw.text((box[0] + 2, box[1] + cell // 3), text, fill=INK, font=font)
    orow, ocol = kernel.origin
    box = (
        x0 + ocol * cell,
        y0 + orow * cell,
        x0 + (ocol + 1) * cell - 1,
        y0 + (orow + 1) * cell - 1,
    )
    draw.rectangle(box, outline=(0, 0, 0), width=2 if cell >= 6 else 1)


def _text_lines(result: Comparison, peak: float, scale: float, display_policy: str) -> list[str]:
    k = result.kernel
    s1, s2 = result.conv_vs_corr, result.conv_vs_flipped_corr
    depth = "float" if result.depth == "float" else f"{result.depth}-bit"
    boundary = result.mode + (f" (cval {result.cval:g})" if result.mode == "constant" else "")
    psnr = "inf" if s1.psnr == float("inf") else f"{s1.psnr:.1f}"
    lines = [
        result.explanation,
        f"kernel {k.name}: {k.shape[0]}x{k.shape[1]}, origin {k.origin}, sum {k.sum:.4g}, "
        f"{k.symmetry}, {'separable' if k.separable else f'rank {k.rank}'}",
        f"backend {result.plan.backend} ({result.plan.method}), boundary {boundary}, "
        f"{result.precision}",
        f"conv vs corr: raw max {s1.max_abs:.3g}, mean {s1.mean_abs:.3g}; as written "
        f"({depth}, '{result.range_policy}'): {s1.differing_pixels} px "
        f"({s1.differing_percent:.2f}%) differ, PSNR {psnr} dB",
        f"conv vs correlate(rot180 K): raw max {s2.max_abs:.3g}, {s2.differing_pixels} px differ",
        f"display: {POLICY_TEXT.get(display_policy, repr(display_policy))}",
    ]
    if result.alpha is not None:
        how = (
            "colour premultiplied by alpha before filtering"
            if result.alpha == "premultiply"
            else "alpha filtered as a plain channel"
        )
        lines.append(
            f"alpha: {how}; tiles drawn over a checkerboard; pixels compared as seen "
            "over black and over white (transparent in both: never differ)"
        )
    over = " of the composites" if result.alpha is not None else ""
    lines.append(
        f"heat map: |conv - corr|{over} per pixel (max over channels), full scale {scale:.3g} "
        f"(99.5th percentile; max {peak:.3g})"
        if peak > 0
        else f"heat map: |conv - corr|{over} is 0 at every pixel"
    )
    return lines


def panel_image(
    result: Comparison, source: NDArray[np.floating], display_policy: str | None = None
) -> ConvImage:
    """The panel as a convcli :class:`~convcli.image_io.Image` (8-bit RGB), ready to write."""
    from .image_io import from_array

    rgb = np.asarray(render_panel(result, source, display_policy=display_policy))
    return from_array(rgb.astype(np.float32) / 255, depth="8")


def result_images(
    result: Comparison, like: ConvImage, display_policy: str, *, raw: bool = False
) -> dict[str, ConvImage]:
    """``convolve``, ``correlate`` and ``correlate-rot180`` as images to write, by name.

    Default: shaped like ``like`` (its bands and depth), as ``convcli apply``
    would write them: colour mapped by ``display_policy`` (float sources stay
    unmapped), alpha clipped to [0, 1] and colour un-premultiplied.

    ``raw=True``: the raw float results, unmapped and unrounded, as float32
    single-channel images (write them as ``.tif``: the only float format), one
    per channel: ``convolve`` for a one-channel image, else ``convolve-R``,
    ``convolve-G``, ... named by ``like``'s bands.  With alpha filtered
    premultiplied, the colour channels hold colour x alpha (what was filtered).
    Load one with ``numpy.asarray(PIL.Image.open(path))``.
    """
    results = (
        ("convolve", result.conv),
        ("correlate", result.corr),
        ("correlate-rot180", result.flip),
    )
    out: dict[str, ConvImage] = {}
    for name, values in results:
        arr = np.asarray(values, dtype=np.float32)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        if raw:
            bands = like.bands if len(like.bands) == arr.shape[2] else "L" * arr.shape[2]
            for c in range(arr.shape[2]):
                key = name if arr.shape[2] == 1 else f"{name}-{bands[c]}"
                pixels = np.ascontiguousarray(arr[:, :, c : c + 1])
                out[key] = replace(like, pixels=pixels, bands="L", depth="float")
            continue
        colour, a = (arr, None) if result.alpha is None else straight(arr, result.alpha)
        if like.depth != "float":  # unrounded: the writer rounds to the depth
            colour = apply_range(colour, display_policy, like.depth)[0]
        mapped = colour if a is None else np.concatenate([colour, a], axis=2)
        out[name] = replace(like, pixels=np.ascontiguousarray(mapped, dtype=np.float32))
    return out


def kernel_picture(kernel: Kernel) -> ConvImage:
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
