"""Filtering whole images: alpha handling, kernels in sequence, and the output range policy.

This is what ``convcli apply`` runs between reading and writing an image:

1. alpha: with ``alpha="premultiply"`` (default) the colour channels are
   multiplied by alpha before filtering and divided by the filtered alpha
   after, so transparent pixels (whose colour is meaningless) do not bleed
   dark fringes into their neighbours; a filtered alpha that rounds to 0 in
   the output depth makes the pixel transparent (colour and alpha 0, see
   :data:`ALPHA_STEPS`); ``alpha="plain"`` filters alpha like any other
   channel;
2. every kernel is applied in turn (``convolve`` or ``correlate``), each
   through the chosen backend;
3. the result is mapped into the output range by a policy (``clip``, ``abs``,
   ``offset``, ``rescale``; ``none`` keeps float data as it is).  Integer
   outputs are then rounded to nearest by :func:`convcli.image_io.to_depth`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .errors import UsageError
from .filtering import Plan, filter_array
from .kernels import Kernel

if TYPE_CHECKING:  # pragma: no cover
    from .image_io import Image

#: Output range policies: how results outside [0, 1] are brought into the output depth.
RANGE_POLICIES: tuple[str, ...] = ("clip", "abs", "offset", "rescale", "none")
ALPHA_MODES: tuple[str, ...] = ("premultiply", "plain")
#: What happens to NaN and infinite samples of a float image: refused, or replaced by 0.
NONFINITE_POLICIES: tuple[str, ...] = ("refuse", "zero")
DEPTHS: tuple[str, ...] = ("8", "16", "float")

#: Samples whose rounded value falls outside [0, max]: below -half a step or above 1 + half.
_HALF_STEP = {"8": 0.5 / 255, "16": 0.5 / 65535, "float": 0.0}

#: With premultiplied alpha, a pixel whose filtered alpha rounds to 0 in the output depth
#: (``alpha * steps <= 0.5`` in double, as :func:`convcli.image_io.to_depth` rounds: at most
#: half a step) is transparent: colour and alpha become 0 (:func:`split_alpha`).  Dividing
#: by such an alpha would turn float noise into colour: the FFT's ~1e-9 where the alpha is 0,
#: or direct's where a sharpen's weights cancel.  Float output takes the 16-bit step (alpha
#: at most 0.5 / 65535 = 7.6e-6), the finest any integer format stores alpha with, and far
#: above float32 noise (about 1e-7 times a kernel's sum of |weights|).
ALPHA_STEPS = {"8": 255.0, "16": 65535.0, "float": 65535.0}


@dataclass(frozen=True)
class FilterOptions:
    """Everything that decides how an image is filtered (the CLI's options)."""

    op: str = "convolve"
    backend: str = "auto"
    mode: str = "reflect"
    cval: float = 0.0
    normalize: bool = False
    range_policy: str | None = None  #: None: ``clip`` for 8/16-bit output, ``none`` for float
    dtype: str = "float32"
    alpha: str = "premultiply"
    depth: str | None = None  #: None: the source's depth
    nonfinite: str = "refuse"  #: NaN/Inf samples: "refuse" (an error), or "zero" (become 0)
    #: Flatten alpha onto this colour, (r, g, b) on 0..1 (:func:`parse_colour`), after
    #: filtering: the output has no alpha.  None: alpha is kept.
    background: tuple[float, float, float] | None = None
    #: Added to every colour result after the kernels, before the range policy, on the
    #: pixels' 0..1 scale (ImageMagick's ``-bias``; a kernel's own offset comes first).
    bias: float = 0.0
    #: Edge operators: ``"auto"`` multiplies the magnitude so that its 99.5th percentile is
    #: white (at least x1, at most x256), with the operator's default range policy only; a
    #: number multiplies by that (1: the raw magnitude, a step from 0 to 1 giving 1).
    edge_gain: str | float = "auto"


#: Colour names :func:`parse_colour` knows (the CSS basic colours), as 0..255 RGB.
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128),
    "gray": (128, 128, 128), "silver": (192, 192, 192), "red": (255, 0, 0),
    "green": (0, 128, 0), "lime": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "cyan": (0, 255, 255), "aqua": (0, 255, 255), "magenta": (255, 0, 255),
    "fuchsia": (255, 0, 255), "maroon": (128, 0, 0), "navy": (0, 0, 128),
    "olive": (128, 128, 0), "purple": (128, 0, 128), "teal": (0, 128, 128),
}  # fmt: skip


#: The value of one level of each stored depth on the 0..1 scale (a kernel's offset is in levels).
LEVEL = {"8": 1 / 255, "16": 1 / 65535, "float": 1.0}


def add_offset(
    values: NDArray[np.floating], kernel: Kernel, depth: str, has_alpha: bool, alpha_mode: str
) -> None:
    """Add ``kernel.offset`` (levels of a ``depth`` image) to the colour of ``values`` in
    place, as the kernel's result; alpha is never offset.  Premultiplied colour gets the
    offset times alpha, so that the straight colour is offset by it."""
    if not kernel.offset:
        return
    o = np.asarray(kernel.offset * LEVEL[depth], dtype=values.dtype)
    if not has_alpha:
        values += o
    elif alpha_mode == "premultiply":
        values[..., :-1] += o * values[..., -1:]
    else:
        values[..., :-1] += o


def flatten(
    colour: NDArray[np.floating],
    alpha: NDArray[np.floating],
    background: tuple[float, float, float],
) -> NDArray[np.floating]:
    """Straight ``colour`` (0..1) composited over ``background`` by ``alpha``: no alpha left.
    Grey images take the background's luma (ITU-R BT.601)."""
    r, g, b = background
    bg = (r, g, b) if colour.shape[-1] == 3 else (0.299 * r + 0.587 * g + 0.114 * b,)
    a = np.clip(alpha, 0.0, 1.0).astype(colour.dtype, copy=False)
    back = np.asarray(bg, dtype=colour.dtype)
    return colour * a + back * (np.asarray(1.0, dtype=colour.dtype) - a)


#: The edge gain's histogram: bins over [0, the operator's largest possible magnitude].
EDGE_GAIN_BINS = 4096
#: The share of samples the automatic edge gain leaves below white.
EDGE_GAIN_PERCENTILE = 99.5
EDGE_GAIN_MAX = 256.0


def edge_histogram(magnitude: NDArray[np.floating], top: float) -> NDArray[np.int64]:
    """Counts of ``|magnitude|`` in :data:`EDGE_GAIN_BINS` bins over ``[0, top]`` (values
    above ``top`` in the last): per strip, their sum is the whole image's, exactly."""
    values = np.minimum(np.abs(magnitude), np.asarray(top, dtype=magnitude.dtype))
    return np.histogram(values, bins=EDGE_GAIN_BINS, range=(0.0, top))[0].astype(np.int64)


def edge_gain(histogram: NDArray[np.int64], top: float) -> tuple[float, float]:
    """``(gain, level)``: the level below which :data:`EDGE_GAIN_PERCENTILE` percent of the
    magnitudes lie (a bin's upper edge), and the gain that makes it white (1 for a flat
    image; within [1, :data:`EDGE_GAIN_MAX`])."""
    total = int(histogram.sum())
    if total == 0:
        return 1.0, 0.0
    need = math.ceil(total * EDGE_GAIN_PERCENTILE / 100.0)
    index = int(np.searchsorted(np.cumsum(histogram), need))
    level = (index + 1) * top / EDGE_GAIN_BINS
    return float(min(max(1.0 / level, 1.0), EDGE_GAIN_MAX)), float(level)


def edge_top(kernels: Sequence[Kernel], gradient: bool) -> float:
    """The largest magnitude an edge operator can give on 0..1 input."""
    sums = [float(np.abs(k.weights).sum()) for k in kernels]
    return float(np.hypot(*sums)) if gradient else sums[0]


def resolve_edge_gain(
    options: FilterOptions,
    kernels: Sequence[Kernel],
    gradient: bool,
    parts: Sequence[NDArray[np.floating]] | None = None,
    histogram: NDArray[np.int64] | None = None,
) -> tuple[float, float]:
    """The edge gain ``(gain, level)`` of :attr:`FilterOptions.edge_gain`: a number as given
    (level 0); ``"auto"`` with the operator's default range policy from the magnitudes
    (``parts``, or their summed :func:`edge_histogram`); ``"auto"`` with a range policy
    given: 1 (the policy decides how the results are shown)."""
    mode = options.edge_gain
    if not isinstance(mode, str):
        value = float(mode)
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"edge gain must be 'auto' or a number > 0, got {mode!r}")
        return value, 0.0
    if mode != "auto":
        raise UsageError(f"edge gain must be 'auto' or a number > 0, got '{mode}'")
    if options.range_policy is not None:
        return 1.0, 0.0
    top = edge_top(kernels, gradient)
    if histogram is None:
        histogram = sum(
            (edge_histogram(p, top) for p in parts or ()), np.zeros(EDGE_GAIN_BINS, np.int64)
        )
    return edge_gain(histogram, top)


def add_bias(colour: NDArray[np.floating], bias: float) -> None:
    """Add the output bias (``FilterOptions.bias``, 0..1 scale) to straight colour in place."""
    if bias:
        colour += np.asarray(bias, dtype=colour.dtype)


def parse_colour(text: str) -> tuple[float, float, float]:
    """A colour as (r, g, b) on 0..1: a name (``white``, ``grey``...), ``#rgb``, ``#rrggbb``,
    or ``R,G,B`` in 0..255 levels.

    >>> parse_colour("white"), parse_colour("#ff8000"), parse_colour("0,0,255")
    ((1.0, 1.0, 1.0), (1.0, 0.5019607843137255, 0.0), (0.0, 0.0, 1.0))
    """
    key = str(text).strip().lower()
    levels: tuple[int, ...] | None = COLOUR_NAMES.get(key)
    digits = "0123456789abcdef"
    if levels is None and key.startswith("#") and all(c in digits for c in key[1:]):
        if len(key) == 4:
            levels = tuple(int(c * 2, 16) for c in key[1:])
        elif len(key) == 7:
            levels = tuple(int(key[i : i + 2], 16) for i in (1, 3, 5))
    if levels is None and key.count(",") == 2:
        try:
            parts = tuple(int(v) for v in key.split(","))
        except ValueError:
            parts = ()
        if len(parts) == 3 and all(0 <= v <= 255 for v in parts):
            levels = parts
    if levels is None:
        raise UsageError(
            f"colour '{text}' is not a name (white, black, grey, red...), #rgb, #rrggbb "
            "or R,G,B in 0..255"
        )
    r, g, b = levels
    return (r / 255.0, g / 255.0, b / 255.0)


@dataclass
class StepReport:
    """One kernel's pass: which kernel, which backend and path, how long."""

    kernel: Kernel
    plan: Plan
    seconds: float


@dataclass
class FilterReport:
    """What happened while filtering one image."""

    steps: list[StepReport] = field(default_factory=list)
    range_policy: str = "clip"
    depth: str = "8"
    out_of_range: int = 0  #: samples outside the output range before the policy
    samples: int = 0  #: colour samples the policy applied to
    value_min: float = 0.0
    value_max: float = 0.0
    #: Edge operators: the factor the magnitude was multiplied by, and (automatic gain) the
    #: magnitude level it made white (0 when the gain was given).
    edge_gain: float = 1.0
    edge_level: float = 0.0


def _check(name: str, value: str, allowed: tuple[str, ...]) -> str:
    key = str(value).strip().lower()
    if key not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}, got '{value}'")
    return key


def apply_range(
    values: NDArray[np.floating],
    policy: str,
    depth: str,
    *,
    bounds: tuple[float, float] | None = None,
    stretch: tuple[float, float] | None = None,
) -> tuple[NDArray[np.floating], int]:
    """Map filtered values into the output range; return them and the out-of-range count.

    ``clip``: clamp to [0, 1]; ``abs``: absolute value, then clamp (edge magnitude);
    ``offset``: add 0.5 (half the range: zero becomes mid-grey), then clamp;
    ``rescale``: stretch min..max to 0..1 (a flat result is only clamped);
    ``none``: unchanged (float output only).  The count is of the samples that
    clamping changes by at least half an output step.  ``bounds``: the values'
    (min, max) if the caller has them already (saves two passes for ``clip``).
    ``stretch``: for ``rescale``, the (min, max) of the whole result when ``values`` is
    only a part of it (a strip).
    """
    policy = _check("range policy", policy, RANGE_POLICIES)
    if policy == "none":
        if depth != "float":
            raise UsageError("range policy 'none' is only for float output (--depth float)")
        return values, 0
    if policy == "abs":
        values = np.abs(values)
    elif policy == "offset":
        values = values + np.asarray(0.5, dtype=values.dtype)
    elif policy == "rescale":
        lo, hi = stretch if stretch is not None else (float(values.min()), float(values.max()))
        if hi > lo:
            values = (values - lo) * np.asarray(1.0 / (hi - lo), dtype=values.dtype)
    half = _HALF_STEP[depth]
    if bounds is not None and policy == "clip":  # clip maps nothing before clamping
        lo, hi = bounds
    else:
        lo, hi = float(values.min()), float(values.max())
    outside = 0  # counted only when some value is out of range (a blur has none)
    if lo < -half:
        outside += int(np.count_nonzero(values < -half))
    if hi > 1 + half:
        outside += int(np.count_nonzero(values > 1 + half))
    if lo >= 0.0 and hi <= 1.0:
        return values, outside
    clipped = np.minimum(values, np.asarray(1.0, dtype=values.dtype))
    np.maximum(clipped, np.asarray(0.0, dtype=values.dtype), out=clipped)
    return clipped, outside


def _check_float_range(pixels: NDArray[np.floating], kernels: Sequence[Kernel]) -> None:
    """Refuse kernels whose results could overflow the computation type (they would turn
    into inf/NaN and be written as black or white without a word)."""
    check_kernel_gain(
        kernels,
        pixels.dtype,
        lambda: float(np.abs(pixels).max()) if pixels.size else 0.0,
    )


def check_kernel_gain(
    kernels: Sequence[Kernel], dtype: np.dtype, peak: Callable[[], float]
) -> None:
    """:func:`_check_float_range` for any source: ``peak()`` gives max |value| of the input
    (called only for kernels of a very large gain)."""
    top = float(np.finfo(dtype).max) / 16
    gain = 1.0
    for k in kernels:
        gain *= float(np.abs(k.weights).sum())
    if gain <= 1e-6 * top:  # the common case: no pass over the pixels needed
        return
    if gain * max(peak(), 1.0) > top:
        hint = "; use --precision float64" if np.dtype(dtype) == np.float32 else ""
        raise UsageError(
            f"the kernels' weights (sum of |weights| {gain:.3g} in all) could overflow "
            f"{np.dtype(dtype)} arithmetic{hint}"
        )


def count_nonfinite(values: NDArray[np.floating]) -> int:
    """How many samples are NaN or infinite (one quick sum when there are none)."""
    from .filtering import _all_finite

    return 0 if _all_finite(values) else int(np.count_nonzero(~np.isfinite(values)))


def nonfinite_samples(values: NDArray[np.floating], policy: str) -> NDArray[np.floating]:
    """``values`` under the NaN/Inf ``policy``: unchanged if all are finite; else refused
    (:class:`~convcli.errors.FilterError` with the count) or replaced by 0."""
    from .errors import FilterError

    policy = _check("NaN policy", policy, NONFINITE_POLICIES)
    count = count_nonfinite(values)
    if count == 0:
        return values
    if policy == "refuse":
        raise FilterError(
            f"{count:,} of the image's samples are NaN or infinite; --nan zero replaces them by 0"
        )
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def split_alpha(
    values: NDArray[np.floating], alpha_mode: str, depth: str = "float"
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """A filtered ``(H, W, C)`` result whose last channel is alpha, as (straight colour,
    alpha clipped to [0, 1]): premultiplied colour is divided by the alpha, and where the
    alpha rounds to 0 in the output ``depth`` (:data:`ALPHA_STEPS`) the pixel is
    transparent (colour and alpha exactly 0); ``plain`` colour and alpha are taken as they
    are (alpha clipped)."""
    colour, alpha = values[..., :-1], np.clip(values[..., -1:], 0.0, 1.0)
    if alpha_mode == "premultiply":
        seen = alpha.astype(np.float64) * ALPHA_STEPS[depth] > 0.5
        safe = np.where(seen, alpha, 1)
        colour = np.where(seen, colour / safe, 0).astype(values.dtype, copy=False)
        alpha[~seen] = 0  # (a new array: np.clip copied it)
    return colour, alpha


def prepare_kernels(kernels: Sequence[Kernel], normalize: bool) -> list[Kernel]:
    """The kernels as they will be applied (normalized to sum 1 if asked)."""
    if not kernels:
        raise UsageError("at least one kernel is needed")
    return [k.normalized() if normalize else k for k in kernels]


def _filtered(
    image: Image, kernels: Sequence[Kernel], options: FilterOptions
) -> tuple[NDArray[np.floating], list[StepReport]]:
    """The kernels in turn over the image's values (premultiplied colour with alpha), in the
    options' precision, each kernel's offset added: the raw results, before any range step."""
    alpha_mode = _check("alpha mode", options.alpha, ALPHA_MODES)
    dtype = np.dtype(_check("precision", options.dtype, ("float32", "float64")))
    ks = prepare_kernels(kernels, options.normalize)
    pixels = np.asarray(image.pixels, dtype=dtype)
    pixels = nonfinite_samples(pixels, options.nonfinite)
    _check_float_range(pixels, ks)
    has_alpha = image.bands in ("LA", "RGBA")
    if has_alpha and alpha_mode == "premultiply":
        pixels = pixels.copy()
        pixels[..., :-1] *= pixels[..., -1:]
    steps = []
    for k in ks:
        t0 = time.perf_counter()
        pixels, plan = filter_array(
            pixels,
            k,
            op=options.op,
            mode=options.mode,
            cval=options.cval,
            backend=options.backend,
            dtype=dtype,
        )
        steps.append(StepReport(k, plan, time.perf_counter() - t0))
        add_offset(pixels, k, image.depth, has_alpha, alpha_mode)
    return pixels, steps


def filter_image(
    image: Image, kernels: Sequence[Kernel], options: FilterOptions = FilterOptions()
) -> tuple[Image, FilterReport]:
    """Filter an image with kernels in sequence; return the new image and a report.

    The returned image keeps the source's bands and metadata; its ``depth`` is
    the output depth (``options.depth`` or the source's).
    """
    depth = _check("depth", options.depth or image.depth, DEPTHS)
    alpha_mode = _check("alpha mode", options.alpha, ALPHA_MODES)
    _check("precision", options.dtype, ("float32", "float64"))  # refused before any work
    policy = _check(
        "range policy",
        options.range_policy or ("none" if depth == "float" else "clip"),
        RANGE_POLICIES,
    )
    if policy == "none" and depth != "float":  # refused before the work, not after it
        raise UsageError("range policy 'none' is only for float output (--depth float)")
    has_alpha = image.bands in ("LA", "RGBA")
    pixels, steps = _filtered(image, kernels, options)
    report = FilterReport(range_policy=policy, depth=depth, steps=steps)

    if has_alpha:
        colour, alpha = split_alpha(pixels, alpha_mode, depth)
    else:
        colour, alpha = pixels, None
    add_bias(colour, options.bias)
    report.value_min = float(colour.min())
    report.value_max = float(colour.max())
    colour, report.out_of_range = apply_range(
        colour, policy, depth, bounds=(report.value_min, report.value_max)
    )
    report.samples = int(colour.size)
    bands = image.bands
    if alpha is not None and options.background is not None:
        colour, alpha, bands = flatten(colour, alpha, options.background), None, bands[:-1]
    out = colour if alpha is None else np.concatenate([colour, alpha], axis=-1)
    pixels = np.ascontiguousarray(out, dtype=np.float32)
    result = replace(image, pixels=pixels, bands=bands, depth=depth)
    return result, report


#: Operators of ``convcli edge``: derivative pairs give the gradient magnitude.
EDGE_OPERATORS: tuple[str, ...] = ("sobel", "prewitt", "scharr", "laplacian", "log")


def parse_edge_operator(operator: str, sigma: float = 1.4) -> tuple[str, float]:
    """``(name, sigma)`` of an edge operator spec: a name, or ``log:sigma=S`` (the sigma of
    the Laplacian of Gaussian; ``sigma`` is the default)."""
    name, _, params = str(operator).partition(":")
    name = _check("edge operator", name.strip().lower(), EDGE_OPERATORS)
    if params:
        key, _, value = params.partition("=")
        if name != "log" or key.strip() != "sigma":
            raise UsageError(
                f"edge operator '{operator}': only log takes a parameter (log:sigma=S)"
            )
        try:
            sigma = float(value)
        except ValueError:
            raise UsageError(f"edge operator '{operator}': sigma must be a number") from None
    if not (math.isfinite(sigma) and sigma > 0):
        raise UsageError(f"edge operator '{operator}': sigma must be > 0, got {sigma:g}")
    return name, sigma


def edge_operator_kernels(operator: str, sigma: float = 1.4) -> tuple[Kernel, ...]:
    """The kernels of an edge operator: one (``laplacian``, ``log``: the absolute response is
    taken) or an (x, y) derivative pair whose gradient magnitude is taken, each divided by the
    sum of its positive weights so that a step from 0 to 1 gives 1.  ``operator`` may be
    ``log:sigma=S`` (:func:`parse_edge_operator`)."""
    from .kernels import builtin_kernel

    operator, sigma = parse_edge_operator(operator, sigma)
    if operator == "laplacian":
        return (builtin_kernel("laplacian", neighbours=8),)
    if operator == "log":
        return (builtin_kernel("log", sigma=sigma),)
    kx = builtin_kernel(operator, axis="x")
    ky = builtin_kernel(operator, axis="y")
    gain = float(np.clip(kx.weights, 0, None).sum())
    return kx.scaled(1 / gain), ky.scaled(1 / gain)


def edge_image(
    image: Image,
    operator: str = "sobel",
    options: FilterOptions = FilterOptions(),
    *,
    sigma: float = 1.4,
) -> tuple[Image, FilterReport]:
    """Edge strength of an image.

    ``sobel``, ``prewitt``, ``scharr``: gradient magnitude ``sqrt(gx**2 + gy**2)``
    with both derivative kernels divided by the sum of their positive weights,
    so a step from 0 to 1 gives 1.  ``laplacian`` (8-neighbour) and ``log``
    (Laplacian of Gaussian of ``sigma``): the absolute response (range
    policy ``abs`` unless another is given).  Alpha, if any, is kept as it is.
    """
    operator, sigma = parse_edge_operator(operator, sigma)
    colour_image = image
    alpha = None
    if image.bands in ("LA", "RGBA"):
        alpha = image.pixels[..., -1:]
        colour_image = replace(image, pixels=image.pixels[..., :-1], bands=image.bands[:-1])
    ks = edge_operator_kernels(operator, sigma)
    gradient = len(ks) == 2
    depth = _check("depth", options.depth or image.depth, DEPTHS)
    default = ("none" if depth == "float" else "clip") if gradient else "abs"
    policy = _check("range policy", options.range_policy or default, RANGE_POLICIES)
    if policy == "none" and depth != "float":
        raise UsageError("range policy 'none' is only for float output (--depth float)")
    raw = replace(options, range_policy="none", depth="float", normalize=False, bias=0.0)
    raw = replace(raw, background=None)
    if gradient:
        gx, report_x = filter_image(colour_image, [ks[0]], raw)
        gy, report_y = filter_image(colour_image, [ks[1]], raw)
        values = np.hypot(gx.pixels, gy.pixels)
        steps = report_x.steps + report_y.steps
    else:
        values, steps = _filtered(colour_image, ks, raw)
        if policy == "rescale":  # the |response| is stretched, as the default shows it
            values = np.abs(values)
    gain, level = resolve_edge_gain(options, ks, gradient, [values])
    if gain != 1.0:
        values = values * np.asarray(gain, dtype=values.dtype)
    add_bias(values, options.bias)
    report = FilterReport(steps=steps, range_policy=policy, depth=depth)
    report.edge_gain, report.edge_level = gain, level
    report.value_min, report.value_max = float(values.min()), float(values.max())
    mapped, report.out_of_range = apply_range(
        values, policy, depth, bounds=(report.value_min, report.value_max)
    )
    report.samples = int(mapped.size)
    result = replace(
        colour_image, pixels=np.ascontiguousarray(mapped, dtype=np.float32), depth=depth
    )
    if alpha is not None and options.background is not None:
        flat = flatten(result.pixels, alpha.astype(np.float32), options.background)
        result = replace(result, pixels=flat.astype(np.float32), bands=image.bands[:-1])
    elif alpha is not None:
        pixels = np.concatenate([result.pixels, alpha.astype(np.float32)], axis=-1)
        result = replace(result, pixels=pixels, bands=image.bands)
    return result, report
