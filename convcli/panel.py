"""The panel of ``convcli compare``, drawn with Pillow.

Layout, top to bottom: the verdict in large coloured letters with the kernel's
symmetry class in words; input | convolution | correlation | |conv - corr| heat
map (amplified so that the 99.5th percentile of the difference shown is full
scale, the gain named in words, with a scale bar); for images shown reduced (or
with a ``crop``), a loupe: the same four at full resolution around the largest
difference, outlined on the input tile; the flip identity: correlate(I, rot180 K)
and its difference from the convolution at the heat map's gain (rounding shows as
0); the kernel as an annotated grid (origin outlined) beside the numbers.

Everything is drawn from :class:`PanelViews`, filled strip by strip (whole
comparisons go through the same views as one strip), so the panel is the same
whatever the strips.

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

import functools
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from .compare import (
    Comparison,
    Strip,
    _colour_bounds,
    straight,
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


@functools.lru_cache(maxsize=8)
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


def _opaque(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """RGB bytes with an opaque alpha channel."""
    out = np.full(rgb.shape[:2] + (4,), 255, np.uint8)
    out[:, :, :3] = rgb
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
    opaque = bool((rgba[..., 3] == 255).all())
    im = Image.fromarray(np.ascontiguousarray(rgba[..., :3]) if opaque else rgba,
                         "RGB" if opaque else "RGBA")  # fmt: skip
    if im.size != content:
        smaller = content[0] < im.size[0]
        resample = Image.Resampling.LANCZOS if smaller else Image.Resampling.NEAREST
        im = im.resize(content, resample)  # Pillow resamples RGBA premultiplied
    if opaque:  # nothing shows through: no checkerboard
        shown = im
    else:
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


#: Side of the loupe's region (full-resolution pixels) chosen when ``--crop`` is not given.
CROP = 160
BANNER_H = 60  #: the verdict banner at the top
VERDICT_COLOURS = {"equal": (0, 128, 64), "negated": (30, 80, 200), "different": (200, 30, 30)}
VERDICT_TITLES = {
    "equal": "EQUAL: convolution == correlation",
    "negated": "NEGATED: convolution == -correlation",
    "different": "DIFFERENT: convolution != correlation",
}


def gain_words(scale: float) -> str:
    """The heat map's display gain (``1 / scale``) in words."""
    gain = 1.0 / scale
    if gain >= 1.0:
        return f"x{gain:.3g} for visibility"
    return f"/{scale:.3g} to fit the scale"


@dataclass(frozen=True)
class PanelLayout:
    """Where everything goes in the panel (pixels; boxes are ``(x0, y0, x1, y1)``, exclusive).

    Top to bottom: the verdict banner; the overview row (input | convolution | correlation
    | |conv - corr| with its scale bar); the loupe row (the same four at full resolution
    around ``crop``), when there is one; the flip row (correlate(I, rot180 K) and its
    difference from the convolution, at the heat map's gain); the kernel grid and the text.
    """

    size: tuple[int, int]  #: (width, height) of the panel
    content: tuple[int, int]  #: (width, height) of the image inside a tile
    box: tuple[int, int]  #: (width, height) of a tile box (labels fit above it)
    tiles: tuple[tuple[int, int], ...]  #: top-left corners of the four overview tile boxes
    offset: tuple[int, int]  #: top-left of the image inside its tile box
    grid: tuple[int, int, int, int]  #: the kernel grid
    cell: int  #: side of a kernel cell
    text_at: tuple[int, int]  #: top-left of the text lines
    labels: tuple[str, ...]  #: the four overview tile labels
    lines: tuple[str, ...]  #: the text lines (the first is the verdict's explanation)
    scale: float  #: heat-map full scale (the 99.5th percentile of the difference shown)
    peak: float  #: largest visible difference
    banner: tuple[str, str]  #: the verdict in large coloured letters, the symmetry class
    flip_tiles: tuple[tuple[int, int], ...]  #: the flip row's two tile boxes
    flip_labels: tuple[str, ...]
    #: the loupe: (x, y, width, height) of the region in image pixels, or None
    crop: tuple[int, int, int, int] | None = None
    crop_tiles: tuple[tuple[int, int], ...] = ()  #: top-left corners of the loupe's boxes
    crop_content: tuple[int, int] = (0, 0)  #: (width, height) of a loupe image on screen
    crop_labels: tuple[str, ...] = ()
    crop_scale: float = 1.0  #: the loupe heat map's full scale

    def content_box(self, i: int) -> tuple[int, int, int, int]:
        """The image inside tile ``i`` (0 input, 1 convolution, 2 correlation, 3 heat map;
        4 correlate(I, rot180 K), 5 its difference from the convolution)."""
        x, y = self.tiles[i] if i < 4 else self.flip_tiles[i - 4]
        x0, y0 = x + self.offset[0], y + self.offset[1]
        return x0, y0, x0 + self.content[0], y0 + self.content[1]

    def crop_box(self, i: int) -> tuple[int, int, int, int]:
        """The loupe image ``i`` (0 input, 1 convolution, 2 correlation, 3 heat map)."""
        x, y = self.crop_tiles[i]
        cw, ch = self.crop_content
        x0, y0 = x + (self.box[0] - cw) // 2, y + (self.box[1] - ch) // 2
        return x0, y0, x0 + cw, y0 + ch

    def marker(self) -> tuple[int, int, int, int] | None:
        """The loupe's region outlined on the input tile (screen pixels), or None."""
        if self.crop is None:
            return None
        x0, y0, x1, y1 = self.content_box(0)
        return self.crop_marker(x0, y0, x1, y1)

    def crop_marker(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        assert self.crop is not None
        cx, cy, cw, ch = self.crop
        sx = (x1 - x0) / self.image_size[0]
        sy = (y1 - y0) / self.image_size[1]
        left, top = x0 + int(cx * sx), y0 + int(cy * sy)
        right = min(x1 - 1, max(x0 + int((cx + cw) * sx) - 1, left + 1))
        bottom = min(y1 - 1, max(y0 + int((cy + ch) * sy) - 1, top + 1))
        return min(left, right), min(top, bottom), right, bottom

    image_size: tuple[int, int] = (1, 1)  #: (width, height) of the image


def _blocks(
    arr: NDArray,
    start: int,
    f: int,
    op: np.ufunc,
    dtype: type | None = None,
    row_dtype: type | None = None,
) -> tuple[NDArray[np.intp], NDArray]:
    """``op`` (np.add or np.maximum) over the blocks of ``f x f`` pixels (counted from the
    image's row 0 and column 0) that rows ``start..`` of ``arr`` (H, W[, K]) touch: the
    block rows, and the reduced ``(blocks, ceil(W / f)[, K])``.  Whole blocks by reshaping
    (fast), the partial ones at the ends apart.  ``row_dtype``: a narrower type for the
    first stage (the f rows of a block), ``dtype`` for the result."""
    n, width = arr.shape[:2]
    rdt = row_dtype or dtype
    head = min(n, (-start) % f)
    full = (n - head) // f
    parts, rows = [], []
    if head:
        parts.append(op.reduce(arr[:head], axis=0, keepdims=True, dtype=rdt))
    if full:
        body = arr[head : head + full * f]
        parts.append(op.reduce(body.reshape(full, f, *body.shape[1:]), axis=1, dtype=rdt))
    if head + full * f < n:
        parts.append(op.reduce(arr[head + full * f :], axis=0, keepdims=True, dtype=rdt))
    first = start // f
    rows = np.arange(first, first + sum(p.shape[0] for p in parts))
    r = parts[0] if len(parts) == 1 else np.concatenate(parts)
    cw = (width // f) * f
    cols = []
    if cw:  # the f columns of each block added one by one (much faster than a reduce)
        main = r[:, :cw].reshape(r.shape[0], width // f, f, *r.shape[2:])
        acc = main[:, :, 0].astype(dtype or main.dtype)
        for i in range(1, f):
            op(acc, main[:, :, i], out=acc)
        cols.append(acc)
    if cw < width:
        cols.append(op.reduce(r[:, cw:], axis=1, keepdims=True, dtype=dtype or r.dtype))
    return rows, (cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1))


class PanelViews:
    """What the panel shows, filled strip by strip: pass it as ``visit`` to
    :func:`convcli.compare.compare_samples`, then :meth:`render`.

    Nothing is kept at full resolution: every tile is reduced while its strip is in cache,
    by an integer factor (the long side to between TILE and 2 TILE pixels; sums of 8-bit
    display values, exact in any order, so the panel is the same whatever the strips),
    and the heat maps keep the largest difference of each block.  The loupe's region is
    chosen from the heat map, then computed again at full resolution (:meth:`crop_rows`,
    :meth:`crop`).
    """

    def __init__(
        self,
        stored: Samples | tuple[int, int, int],
        policy: str,
        alpha: str,
        *,
        crop: tuple[int, int, int, int] | None = None,
        loupe: bool | None = None,
    ) -> None:
        from .errors import UsageError

        shape = stored if isinstance(stored, tuple) else (stored.height, stored.width,
                                                          stored.channels)  # fmt: skip
        height, width, channels = shape
        self.shape = shape
        self.policy = policy
        self.alpha = alpha if channels in (2, 4) else None
        f = max(1, max(height, width) // TILE)
        self.factor = f
        rh, rw = -(-height // f), -(-width // f)
        rows = np.minimum(f, height - np.arange(rh) * f)
        cols = np.minimum(f, width - np.arange(rw) * f)
        self.counts = (rows[:, None] * cols[None, :]).astype(np.int64)
        self.col_counts = cols.astype(np.int64)  #: pixels across each block
        self.sums = {n: np.zeros((rh, rw, 4), np.int64) for n in ("input", "conv", "corr", "flip")}
        self.heat = np.zeros((rh, rw))
        self.flip_heat = np.zeros((rh, rw))
        self.lock = threading.Lock()
        if crop is not None:
            x, y, w, h = crop
            if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
                raise UsageError(
                    f"crop {x},{y},{w},{h} is not inside the {width}x{height} image "
                    "(X,Y,W,H: left, top, width, height in pixels)"
                )
        self.crop_region = crop
        #: whether to show a loupe: asked for, or the image is shown reduced
        self.loupe = crop is not None or (max(height, width) > TILE if loupe is None else loupe)
        self.crops: list[NDArray[np.uint8]] | None = None
        self.crop_diff: NDArray[np.float64] | None = None

    # -- from the strips ----------------------------------------------------------------
    def _shown(
        self, values: NDArray, policy: str | None, bounds=None
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
        """Display bytes: (straight colour (H, W, 1 or 3), alpha (H, W, 1) or None)."""
        from .compare import written_samples

        alpha = self.alpha if policy is not None else ("plain" if self.alpha else None)
        arr = values if values.ndim == 3 else values[:, :, None]
        out = written_samples(arr, policy or "clip", "8", alpha, bounds)
        if self.alpha is None:
            return out, None
        return out[..., :-1], out[..., -1:]

    def _reduce(self, name: str, shown, start: int) -> None:
        """Add a strip's display bytes to the tile's block sums: colour times alpha and
        alpha (premultiplied: hidden colours do not leak), as exact integers."""
        colour, a = shown
        f = self.factor
        wide = np.uint32 if f * f * 65025 < 2**32 else np.uint64
        if a is None:
            weighted = colour
        else:
            weighted = np.concatenate([colour.astype(np.uint16) * a, a], axis=2)
        narrow = np.uint16 if a is None and f * 255 < 2**16 else None  # the f rows' sums fit
        blocks, part = _blocks(weighted, start, f, np.add, wide, narrow)
        part = part.astype(np.int64)
        with self.lock:
            target = self.sums[name]
            if a is None:  # opaque: alpha is 255 on every pixel
                target[blocks, :, : colour.shape[2]] += part * 255
                rows = np.bincount((np.arange(colour.shape[0]) + start) // f - blocks[0])
                target[blocks, :, 3] += 255 * rows[:, None] * self.col_counts[None, :]
            else:
                target[blocks, :, : colour.shape[2]] += part[..., :-1]
                target[blocks, :, 3] += part[..., -1]

    def _pool(self, target: NDArray, diff: NDArray, start: int) -> None:
        """The largest of each block into ``target``; ``diff`` (H, W) or (H, W, C): the max
        over the channels too (taken after the blocks': the same maximum, less work)."""
        f = self.factor
        blocks, part = _blocks(diff, start, f, np.maximum)
        if part.ndim == 3:
            part = part.max(axis=2)
        with self.lock:
            target[blocks] = np.maximum(target[blocks], part)

    def _difference(
        self, a: NDArray, b: NDArray, diff: NDArray | None = None, magnitude: NDArray | None = None
    ) -> NDArray:
        """The visible |a - b| (the heat map's values): per channel (H, W, C) without alpha
        (``diff``: a - b as computed, ``magnitude``: its absolute value), else per pixel
        (H, W), the composites' largest difference."""
        from .compare import difference_map

        if self.alpha is None:  # no alpha: conv - corr as computed, without cancellation
            if magnitude is None:
                magnitude = np.abs(diff if diff is not None else np.subtract(a, b))
            return magnitude if magnitude.ndim == 3 else magnitude[:, :, None]
        return difference_map(a, b, self.alpha)

    @staticmethod
    def _per_pixel(d: NDArray) -> NDArray:
        """A :meth:`_difference` as (H, W): the largest over the channels."""
        if d.ndim == 2:
            return d
        out = d[:, :, 0].copy()
        for c in range(1, d.shape[2]):
            np.maximum(out, d[:, :, c], out=out)
        return out

    def _bytes(self, strip: Strip, name: str, values: NDArray, policy: str | None):
        """The display bytes of one of the strip's images (the written ones when at hand)."""
        shown = strip.shown
        if (
            shown is not None
            and shown.get(name) is not None
            and self.alpha is None
            and (name == "input" or strip.policy == self.policy)
        ):
            return _hwc_u8(shown[name]), None
        key = None if name == "input" else name
        return self._shown(values, policy, strip.bounds.get(key) if key else None)

    def __call__(self, strip: Strip) -> None:
        conv = self._bytes(strip, "conv", strip.conv, self.policy)
        self._reduce("input", self._bytes(strip, "input", strip.source, None), strip.start)
        self._reduce("conv", conv, strip.start)
        if strip.corr is strip.conv:  # the same array: the same bytes
            self._reduce("corr", conv, strip.start)
        else:
            self._reduce("corr", self._bytes(strip, "corr", strip.corr, self.policy), strip.start)
        shown = strip.shown or {}
        if strip.flip is strip.conv or (
            shown.get("flip") is not None and shown.get("flip") is shown.get("conv")
        ):  # the same bytes (compare_samples found the written samples equal)
            self._reduce("flip", conv, strip.start)
        else:
            self._reduce("flip", self._bytes(strip, "flip", strip.flip, self.policy), strip.start)
        if strip.flip is not strip.conv:
            flips = self._difference(strip.conv, strip.flip, magnitude=strip.abs_flip)
            self._pool(self.flip_heat, flips, strip.start)
        d = self._difference(strip.conv, strip.corr, strip.diff, strip.abs_diff)
        self._pool(self.heat, d, strip.start)

    def crop_rows(self, result: Comparison | None = None) -> tuple[int, int] | None:
        """Rows of the loupe's region (None: no loupe); picks the region if not given: the
        CROP-pixel square where the heat map (the largest |conv - corr| of each block of
        :attr:`factor` pixels) sums highest (the centre if it is 0 everywhere)."""
        if not self.loupe:
            return None
        height, width = self.shape[:2]
        if self.crop_region is None:
            cw, ch = min(width, CROP), min(height, CROP)
            block = self.factor
            k = max(1, CROP // block)
            g = self.heat
            kh, kw = min(k, g.shape[0]), min(k, g.shape[1])
            c = np.zeros((g.shape[0] + 1, g.shape[1] + 1))
            c[1:, 1:] = g.cumsum(0).cumsum(1)
            win = c[kh:, kw:] - c[:-kh, kw:] - c[kh:, :-kw] + c[:-kh, :-kw]
            if win.max() > 0:
                i, j = np.unravel_index(int(np.argmax(win)), win.shape)
                x = min(max(0, j * block + (kw * block - cw) // 2), width - cw)
                y = min(max(0, i * block + (kh * block - ch) // 2), height - ch)
            else:
                x, y = (width - cw) // 2, (height - ch) // 2
            self.crop_region = (int(x), int(y), cw, ch)
        _, y, _, h = self.crop_region
        return y, y + h

    def crop(self, strip: Strip) -> None:
        """The loupe's rows at full resolution (its columns are cut here)."""
        assert self.crop_region is not None
        x, _, w, _ = self.crop_region
        width = self.shape[1]

        def cut(a: NDArray) -> NDArray:  # whole rows, or the loupe's columns already
            return np.ascontiguousarray(a if a.shape[1] == w else a[:, x : x + w])

        assert strip.conv.shape[1] in (w, width)

        b = strip.bounds
        self.crops = [
            _rgba(*self._shown(cut(strip.source), None)),
            _rgba(*self._shown(cut(strip.conv), self.policy, b.get("conv"))),
            _rgba(*self._shown(cut(strip.corr), self.policy, b.get("corr"))),
        ]
        diff = self._difference(cut(strip.conv), cut(strip.corr), cut(strip.diff))
        self.crop_diff = np.asarray(self._per_pixel(diff), np.float64)

    # -- drawing ------------------------------------------------------------------------
    def reduced(self, name: str) -> NDArray[np.uint8]:
        """A tile reduced by :attr:`factor`: RGBA bytes, straight colour."""
        sums = self.sums[name]
        if self.shape[2] <= 2:  # grey: the one colour channel, repeated
            sums = sums.copy()
            sums[..., 1] = sums[..., 2] = sums[..., 0]
        a = sums[..., 3]
        colour = np.where(a[..., None] > 0, sums[..., :3] / np.maximum(a, 1)[..., None], 0)
        alpha = a / self.counts
        out = np.empty(sums.shape, np.uint8)
        out[..., :3] = np.rint(colour)
        out[..., 3] = np.rint(alpha)
        return out

    def layout(self, result: Comparison, display_policy: str | None = None) -> PanelLayout:
        return _plan(result, self, display_policy or self.policy)

    def render(self, result: Comparison) -> Image.Image:
        """The panel of ``result`` (the comparison these views were filled by)."""
        return _draw(result, self.layout(result), self)

    def image(self, result: Comparison) -> ConvImage:
        """:meth:`render` as a convcli Image (8-bit RGB), ready to write."""
        from .image_io import from_array

        rgb = np.asarray(self.render(result), dtype=np.float32)  # one float copy, scaled in place
        rgb *= np.float32(1 / 255)
        return from_array(rgb, depth="8")


def _hwc_u8(samples: NDArray) -> NDArray[np.uint8]:
    return samples if samples.ndim == 3 else samples[:, :, None]


def _rgba(colour: NDArray[np.uint8], alpha: NDArray[np.uint8] | None) -> NDArray[np.uint8]:
    """Display bytes as one RGBA array (grey repeated, opaque without alpha)."""
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    a = np.full(rgb.shape[:2] + (1,), 255, np.uint8) if alpha is None else alpha
    return np.concatenate([rgb, a], axis=2)


def _scale_of(diff: NDArray[np.float64]) -> tuple[float, float]:
    """(full scale, peak) of a difference map: the 99.5th percentile, so that a few extreme
    pixels do not hide the rest."""
    peak = float(diff.max()) if diff.size else 0.0
    scale = 0.0
    if peak > 0:  # numpy's default ('linear') percentile, on the sorted values
        values = np.sort(diff, axis=None)
        at = 0.995 * (values.size - 1)
        lo = int(at)
        hi = min(lo + 1, values.size - 1)
        scale = float(values[lo] + (values[hi] - values[lo]) * (at - lo))
    return (scale if scale > 0 else (peak if peak > 0 else 1.0)), peak


def views_of(
    result: Comparison,
    source: NDArray[np.floating],
    display_policy: str | None = None,
    *,
    crop: tuple[int, int, int, int] | None = None,
    loupe: bool | None = None,
) -> PanelViews:
    """:class:`PanelViews` of a whole comparison (:func:`convcli.compare.compare`, whose
    results are kept): the same views a strip-by-strip run fills."""
    from .compare import _hwc

    policy = display_policy or result.range_policy
    conv, corr, flip = (_hwc(a) for a in (result.conv, result.corr, result.flip))
    diff = _hwc(result.diff) if result.diff is not None else conv - corr
    src = _hwc(np.asarray(source))
    views = PanelViews(conv.shape, policy, result.alpha or "premultiply", crop=crop, loupe=loupe)
    if result.alpha is None:
        views.alpha = None
    bounds: dict = dict(result.bounds or {})
    if policy == "rescale":
        for name, values in (("conv", conv), ("corr", corr), ("flip", flip)):
            if bounds.get(name) is None:
                bounds[name] = _colour_bounds(values, result.alpha, "8")  # (an 8-bit panel)
    from .compare import Strip

    views(Strip(0, src, conv, corr, flip, diff, bounds))
    rows = views.crop_rows(result)
    if rows is not None:
        r = slice(*rows)
        views.crop(Strip(rows[0], src[r], conv[r], corr[r], flip[r], diff[r], bounds))
    return views


def _plan(result: Comparison, views: PanelViews, display_policy: str) -> PanelLayout:
    scale, peak = _scale_of(views.heat)
    flip_peak = float(views.flip_heat.max()) if views.flip_heat.size else 0.0
    labels = ("input", "convolution", "correlation", f"|conv - corr| {gain_words(scale)}")
    flip_labels = (
        "correlate(I, rot180 K)",
        "|conv - that|: "
        + ("0 everywhere" if flip_peak == 0 else f"max {flip_peak:.2g}")
        + " (same gain)",
    )
    lines = tuple(_text_lines(result, peak, scale, display_policy))
    height, width = views.shape[:2]

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font, small, big = _font(14), _font(11), _font(26)
    crop_labels: tuple[str, ...] = ()
    crop_scale = 1.0
    crop_content = (0, 0)
    if views.crops is not None and views.crop_region is not None:
        cx, cy, cw, ch = views.crop_region
        zoom = max(1, TILE // max(cw, ch))
        crop_content = (cw * zoom, ch * zoom) if max(cw, ch) * zoom <= TILE else tile_size(ch, cw)
        crop_scale, _ = _scale_of(views.crop_diff)  # type: ignore[arg-type]
        shown = f"{zoom}x" if max(cw, ch) <= TILE else "reduced"
        crop_labels = (
            f"loupe {cx},{cy} {cw}x{ch} px ({shown})",
            "convolution (loupe)",
            "correlation (loupe)",
            f"|conv - corr| {gain_words(crop_scale)}",
        )
    all_labels = labels + flip_labels + crop_labels
    label_w = max(int(measure.textlength(t, font=font)) for t in all_labels) + 4
    cw_, ch_ = tile_size(height, width)
    bw, bh = tile_box(height, width)
    if crop_labels:
        bw, bh = max(bw, crop_content[0]), max(bh, crop_content[1])
    bw = max(bw, label_w)
    row_h = LABEL_H + bh + BAR_H + MARGIN
    y = MARGIN + BANNER_H
    tiles = tuple((MARGIN + i * (bw + MARGIN), y + LABEL_H) for i in range(4))
    y += row_h
    crop_tiles: tuple[tuple[int, int], ...] = ()
    if crop_labels:
        crop_tiles = tuple((MARGIN + i * (bw + MARGIN), y + LABEL_H) for i in range(4))
        y += row_h
    flip_tiles = tuple((MARGIN + i * (bw + MARGIN), y + LABEL_H) for i in range(2))
    y += LABEL_H + bh + MARGIN

    cell = max(1, min(40, 260 // max(result.kernel.shape)))  # numbers written when they fit
    grid_w, grid_h = cell * result.kernel.shape[1], cell * result.kernel.shape[0]
    top = y + MARGIN
    text_x = MARGIN + grid_w + 2 * MARGIN
    text_w = max(
        int(measure.textlength(t, font=font if j == 0 else small)) for j, t in enumerate(lines)
    )
    banner = (VERDICT_TITLES[result.verdict], result.symmetry_words)
    banner_w = max(int(measure.textlength(banner[0], font=big)),
                   int(measure.textlength(banner[1], font=font)))  # fmt: skip
    width_px = max(MARGIN + 4 * (bw + MARGIN), text_x + text_w + MARGIN, banner_w + 2 * MARGIN)
    height_px = top + max(grid_h, LINE_H * len(lines)) + MARGIN
    return PanelLayout(
        size=(width_px, height_px),
        content=(cw_, ch_),
        box=(bw, bh),
        tiles=tiles,
        offset=((bw - cw_) // 2, (bh - ch_) // 2),
        grid=(MARGIN, top, MARGIN + grid_w, top + grid_h),
        cell=cell,
        text_at=(text_x, top),
        labels=labels,
        lines=lines,
        scale=scale,
        peak=peak,
        banner=banner,
        flip_tiles=flip_tiles,
        flip_labels=flip_labels,
        crop=views.crop_region if crop_labels else None,
        crop_tiles=crop_tiles,
        crop_content=crop_content,
        crop_labels=crop_labels,
        crop_scale=crop_scale,
        image_size=(width, height),
    )


def panel_layout(
    result: Comparison, source: NDArray[np.floating], display_policy: str | None = None,
    *, crop: tuple[int, int, int, int] | None = None,
) -> PanelLayout:  # fmt: skip
    """The geometry :func:`render_panel` draws with (for checks and tests)."""
    views = views_of(result, source, display_policy, crop=crop)
    return _plan(result, views, display_policy or result.range_policy)


def render_panel(
    result: Comparison,
    source: NDArray[np.floating],
    *,
    display_policy: str | None = None,
    crop: tuple[int, int, int, int] | None = None,
) -> Image.Image:
    """Draw the comparison as one RGB image (``display_policy``: default the result's)."""
    policy = display_policy or result.range_policy
    views = views_of(result, source, policy, crop=crop)
    return _draw(result, _plan(result, views, policy), views)


def _heat_rgba(diff: NDArray[np.float64], scale: float) -> NDArray[np.uint8]:
    return _opaque(heat(diff / scale))


def _draw(result: Comparison, layout: PanelLayout, views: PanelViews) -> Image.Image:
    panel = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(panel)
    font, small, big = _font(14), _font(11), _font(26)
    # the verdict, large and coloured, with the kernel's class in words
    draw.text((MARGIN, MARGIN), layout.banner[0], fill=VERDICT_COLOURS[result.verdict], font=big)
    draw.text((MARGIN, MARGIN + 34), layout.banner[1], fill=INK, font=font)

    def tiles(corners, labels, images, content) -> None:
        for (x, y), label, rgba in zip(corners, labels, images, strict=True):
            draw.text((x, y - LABEL_H + 2), label, fill=INK, font=font)
            panel.paste(_tile(rgba, content, layout.box), (x, y))
            # a frame just outside the box, so that white tiles stand out from the background
            draw.rectangle((x - 1, y - 1, x + layout.box[0], y + layout.box[1]), outline=FRAME)

    shown = [views.reduced(n) for n in ("input", "conv", "corr")]
    shown.append(_heat_rgba(views.heat, layout.scale))
    tiles(layout.tiles, layout.labels, shown, layout.content)
    _scale_bar(draw, panel, layout, layout.tiles[3], layout.scale, layout.peak, small)
    if layout.crop is not None and views.crops is not None:
        crops = [*views.crops, _heat_rgba(views.crop_diff, layout.crop_scale)]  # type: ignore[arg-type]
        tiles(layout.crop_tiles, layout.crop_labels, crops, layout.crop_content)
        peak = float(views.crop_diff.max()) if views.crop_diff.size else 0.0  # type: ignore[union-attr]
        _scale_bar(draw, panel, layout, layout.crop_tiles[3], layout.crop_scale, peak, small)
        box = layout.marker()
        if box is not None:  # where the loupe is, on the input tile (inside the image)
            draw.rectangle(box, outline=(255, 0, 255), width=2)
    flips = [views.reduced("flip"), _heat_rgba(views.flip_heat, layout.scale)]
    tiles(layout.flip_tiles, layout.flip_labels, flips, layout.content)

    _draw_kernel(draw, result.kernel, layout.grid[0], layout.grid[1], layout.cell, small)
    tx, ty = layout.text_at
    for j, line in enumerate(layout.lines):
        draw.text((tx, ty + LINE_H * j), line, fill=INK, font=font if j == 0 else small)
    return panel


def _scale_bar(draw, panel, layout: PanelLayout, at, scale: float, peak: float, font) -> None:
    bw, bh = layout.box
    x, y = at[0], at[1] + bh + 5
    bar = heat(np.linspace(0, 1, bw)[None, :].repeat(8, axis=0))
    panel.paste(Image.fromarray(bar, "RGB"), (x, y))
    draw.text((x, y + 9), "0", fill=INK, font=font)
    label = f"{scale:.3g}" + ("+" if scale < peak else "")
    draw.text((x + bw - 7 * len(label), y + 9), label, fill=INK, font=font)


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
        f"conv vs correlate(rot180 K) (computed with the image turned instead): raw max "
        f"{s2.max_abs:.3g} (rounding bound {result.tolerance:.2g}), {s2.differing_pixels} px "
        "differ as written (where rounding falls either side of a step)",
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
        colour, a = (arr, None) if result.alpha is None else straight(arr, result.alpha, like.depth)
        if like.depth != "float":  # unrounded: the writer rounds to the depth
            colour = apply_range(colour, display_policy, like.depth)[0]
        mapped = colour if a is None else np.concatenate([colour, a], axis=2)
        out[name] = replace(like, pixels=np.ascontiguousarray(mapped, dtype=np.float32))
    return out


class ResultFiles:
    """``convcli compare --save-results``: the three results written into a folder while the
    strips are computed (pass as ``save`` to :func:`convcli.compare.compare_samples`).

    Written as ``convcli apply`` writes them (8/16-bit PNG through the streaming
    :class:`~convcli.png_codec.PngWriter`; float images as float32 TIFF through
    :func:`~convcli.tiff_codec.write_tiff`), or ``raw``: one float32 TIFF per channel of
    the raw results (``float64`` precision stops here: the files are float32).  Every file
    is written atomically: on any failure none is left behind.
    """

    def __init__(self, folder: str, stem: str, stored: Samples, *, raw: bool = False) -> None:
        import contextlib
        from pathlib import Path

        self.folder, self.stem, self.stored, self.raw = Path(folder), stem, stored, raw
        self.stack = contextlib.ExitStack()
        self.writers: dict[str, object] = {}
        self.names: list[str] = []

    def _paths(self) -> list[tuple[str, str, int | None]]:
        out = []
        bands = self.stored.bands if len(self.stored.bands) == self.stored.channels else (
            "L" * self.stored.channels
        )  # fmt: skip
        for name in ("convolve", "correlate", "correlate-rot180"):
            if self.raw:
                for c in range(self.stored.channels):
                    key = name if self.stored.channels == 1 else f"{name}-{bands[c]}"
                    out.append((key, name, c))
            else:
                out.append((name, name, None))
        return out

    def __enter__(self) -> ResultFiles:
        import sys

        from .atomic import open_atomically
        from .pipeline.engine import executor
        from .png_codec import PngWriter

        self.folder.mkdir(parents=True, exist_ok=True)  # an OSError: the CLI names the path
        meta = self.stored.meta
        h, w = self.stored.height, self.stored.width
        self.stack.__enter__()
        try:
            for key, name, channel in self._paths():
                tiff = self.raw or self.stored.depth == "float"
                path = self.folder / f"{self.stem}-{key}{'.tif' if tiff else '.png'}"
                try:
                    fh = self.stack.enter_context(open_atomically(path))
                    if tiff:
                        bands = "L" if self.raw else self.stored.bands
                        writer: object = _TiffThread(fh, h, w, bands, None if self.raw else meta)
                        self.stack.callback(writer.abandon)  # type: ignore[attr-defined]
                    else:
                        dtype = np.uint8 if self.stored.depth == "8" else np.uint16
                        writer = PngWriter(
                            fh, w, h, self.stored.bands, dtype, icc_profile=meta.icc_profile,
                            dpi=meta.dpi, exif=meta.exif, pool=executor(), workers=2,
                        )  # fmt: skip
                except OSError as exc:
                    raise _cannot_write(path, exc) from None
                self.writers[key] = (writer, name, channel, path)
                self.names.append(path.name)
        except BaseException:
            self.stack.__exit__(*sys.exc_info())
            raise
        return self

    def __call__(self, start: int, results: dict[str, NDArray]) -> None:
        for writer, name, channel, path in self.writers.values():  # type: ignore[misc]
            values = results[name]
            if channel is not None:
                values = np.ascontiguousarray(values[..., channel : channel + 1], np.float32)
            try:
                writer.write(values)
            except OSError as exc:
                raise _cannot_write(path, exc) from None

    def __exit__(self, kind, exc, tb) -> bool | None:
        import sys

        if kind is None:
            try:
                for writer, _, _, path in self.writers.values():  # type: ignore[misc]
                    try:
                        writer.close()
                    except OSError as error:
                        raise _cannot_write(path, error) from None
            except BaseException:  # every file removed; then the error, which names the file
                if not self.stack.__exit__(*sys.exc_info()):
                    raise
                return None
            try:  # the files renamed into place
                return self.stack.__exit__(None, None, None)
            except OSError as error:
                raise _cannot_write(self.folder, error) from None
        for writer, *_ in self.writers.values():  # type: ignore[misc]
            abort = getattr(writer, "abort", None) or getattr(writer, "abandon", None)
            abort()
        return self.stack.__exit__(kind, exc, tb)


def _cannot_write(path, exc: OSError):
    from .errors import ImageWriteError

    return ImageWriteError(f"{path}: cannot write ({exc.strerror or exc})")


class _TiffThread:
    """:func:`~convcli.tiff_codec.write_tiff` (which pulls its strips) fed by pushes: it
    runs on its own thread, reading a short queue."""

    _END = object()

    def __init__(self, fh, height: int, width: int, bands: str, meta) -> None:
        import queue

        from .image_io import tiff_tags
        from .tiff_codec import write_tiff

        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.stopped = False
        self.ended = False  #: the end marker was taken from the queue (by this thread only)

        def strips():
            while True:
                item = self.queue.get()
                if item is self._END:
                    self.ended = True
                    return
                yield item

        def run() -> None:
            try:
                write_tiff(
                    fh, strips(), height=height, width=width, bands=bands, dtype=np.float32,
                    icc_profile=None if meta is None else meta.icc_profile,
                    dpi=None if meta is None else meta.dpi,
                    tags=None if meta is None else tiff_tags(meta),
                )  # fmt: skip
            except BaseException as exc:  # handed to the producer
                self.error = exc
                # keep draining until the end marker, so that the producer never blocks; when
                # the failure came from it (abandoned: too few strips), it is taken already
                while not self.ended:
                    if self.queue.get() is self._END:
                        self.ended = True

        self.thread = threading.Thread(target=run, name="convcli-tiff", daemon=True)
        self.thread.start()

    def write(self, values: NDArray) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(np.ascontiguousarray(values, np.float32))

    def close(self) -> None:
        self.queue.put(self._END)
        self.thread.join()
        self.stopped = True
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """Stop the writer (its output is thrown away): the end marker is handed over
        while the thread still reads, and the thread waited for."""
        import queue

        if not self.stopped:
            self.stopped = True
            while self.thread.is_alive():
                try:
                    self.queue.put(self._END, timeout=0.05)
                    break
                except queue.Full:
                    continue
            self.thread.join()


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
