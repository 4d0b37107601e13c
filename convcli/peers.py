"""What do other libraries compute when they say "convolution"?  ``convcli probe --peers``.

Every library installed beside convcli (and the ``vips`` and ImageMagick command lines, when
on ``PATH``) filters a single bright pixel with an asymmetric odd kernel and an asymmetric
even one; :func:`convcli.identify.identify` then says what each result is: convolution,
correlation or neither, where the even kernel's origin lies, and how results are rounded.
The data are tiny (15x15 pixels), so the whole probe takes a fraction of a second per peer.

A peer that is not installed is reported as ``not installed``; one that raises or exits
non-zero is reported with its message (``failed``); neither stops the others.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .identify import Identification, identify
from .image_io import from_array
from .kernels import Kernel

#: The probe kernels: every weight different (no symmetry hides a flip), fractions of a
#: level on the impulse (so rounding shows), and an even size (so the origin shows).
ODD_KERNEL = Kernel(np.arange(1, 10).reshape(3, 3) / 45, name="[1..9]/45 (3x3)")
EVEN_KERNEL = Kernel(np.array([[1.0, 2.0], [3.0, 4.0]]) / 7, name="[1 2; 3 4]/7 (2x2)")
#: The impulse: one pixel of this level in the middle of a black square.
IMPULSE_LEVEL = 200
IMPULSE_SIZE = 15
_TIMEOUT_S = 60


class NotInstalled(Exception):
    """The peer's library or program is absent."""


class NotSupported(Exception):
    """The peer cannot take this kernel (Pillow: 3x3 and 5x5 only)."""


@dataclass(frozen=True)
class Peer:
    """A library call that claims to convolve (or correlate), run on 8-bit or float data."""

    name: str  #: what is called, e.g. ``cv2.filter2D``
    library: str  #: the package or program whose version is reported
    #: (uint8 impulse image, float64 weights) -> the result (uint8, or float in levels)
    run: Callable[[NDArray[np.uint8], NDArray[np.float64]], NDArray[Any]]
    claims: str  #: what its documentation calls it


@dataclass
class PeerResult:
    """What one peer computed on the odd and the even kernel."""

    peer: Peer
    status: str  #: "ok", "not installed", "failed"
    version: str | None = None
    message: str | None = None
    odd: Identification | None = None
    even: Identification | None = None
    even_message: str | None = None  #: why the even kernel has no answer
    output_type: str | None = None  #: "uint8" or "float"

    def computes(self) -> str:
        """``correlate``, ``convolve``, ``flip-x``, ``flip-y`` (or several when the data cannot
        tell them apart), ``neither`` when nothing fits, or ``-``."""
        if self.odd is None:
            return "-"
        if not self.odd.best.fits:
            return "neither"
        return " or ".join(self.odd.equivalent["operation"])

    def even_origin(self) -> str:
        """Where the even kernel's origin is, in the kernel as written: ``(row, col)``."""
        if self.even is None:
            return self.even_message or "-"
        if not self.even.best.fits:
            return "no fit"
        ops = self.even.equivalent["operation"]
        origins = self.even.equivalent["origin"]
        where = " or ".join(f"({r}, {c})" for r, c in origins)
        how = " or ".join(ops)
        if self.even.equivalent["normalized"] == [True]:
            how += ", kernel normalized"
        return f"{where} ({how})"

    def rounding(self) -> str:
        if self.odd is None:
            return "-"
        if self.output_type == "float":
            return "none (float output)"
        if not self.odd.best.fits:
            return "-"
        found = self.odd.equivalent["rounding"]
        text = " or ".join(found)
        if self.odd.verdict == "fits":  # not exact: say how close
            off = 1.0 - self.odd.best.interior.exact
            text += f" (within 1 level; {off:.1%} of pixels off by 1)"
        return text

    def row(self) -> list[str]:
        if self.status != "ok":
            text = self.status + (f": {self.message}" if self.message else "")
            return [self.peer.name, self.version or "-", self.peer.claims, text, "-", "-"]
        return [
            self.peer.name,
            self.version or "-",
            self.peer.claims,
            self.computes(),
            self.even_origin(),
            self.rounding(),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer.name,
            "library": self.peer.library,
            "claims": self.peer.claims,
            "status": self.status,
            "version": self.version,
            "message": self.message,
            "output_type": self.output_type,
            "computes": self.computes() if self.status == "ok" else None,
            "even_kernel_origin": self.even_origin() if self.status == "ok" else None,
            "rounding": self.rounding() if self.status == "ok" else None,
            "odd": self.odd.to_dict() if self.odd is not None else None,
            "even": self.even.to_dict() if self.even is not None else None,
        }


#: Table columns (``row()`` order).
COLUMNS = ("peer", "version", "calls it", "computes", "even-kernel origin", "rounding")


def impulse() -> NDArray[np.uint8]:
    img = np.zeros((IMPULSE_SIZE, IMPULSE_SIZE), dtype=np.uint8)
    img[IMPULSE_SIZE // 2, IMPULSE_SIZE // 2] = IMPULSE_LEVEL
    return img


# -- the peers -------------------------------------------------------------------------------


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise NotInstalled(name) from None


def _scipy_ndimage(fn: str) -> Callable[[NDArray[np.uint8], NDArray[np.float64]], NDArray]:
    def run(img: NDArray[np.uint8], w: NDArray[np.float64]) -> NDArray:
        ndimage = _module("scipy.ndimage")
        return getattr(ndimage, fn)(img, w, mode="constant")  # uint8 in, uint8 out

    return run


def _scipy_signal(fn: str) -> Callable[[NDArray[np.uint8], NDArray[np.float64]], NDArray]:
    def run(img: NDArray[np.uint8], w: NDArray[np.float64]) -> NDArray:
        signal = _module("scipy.signal")
        return getattr(signal, fn)(img.astype(np.float64), w, mode="same")

    return run


def _opencv(img: NDArray[np.uint8], w: NDArray[np.float64]) -> NDArray:
    cv2 = _module("cv2")
    return cv2.filter2D(img, -1, w, borderType=cv2.BORDER_CONSTANT)


def _pillow(img: NDArray[np.uint8], w: NDArray[np.float64]) -> NDArray:
    from PIL import Image, ImageFilter

    if w.shape not in ((3, 3), (5, 5)):
        raise NotSupported("3x3 and 5x5 kernels only")
    kernel = ImageFilter.Kernel(w.shape[::-1], w.ravel().tolist(), scale=1)
    return np.asarray(Image.fromarray(img, mode="L").filter(kernel))


def _torch(img: NDArray[np.uint8], w: NDArray[np.float64]) -> NDArray:
    torch = _module("torch")
    x = torch.from_numpy(img.astype(np.float64))[None, None]
    k = torch.from_numpy(np.ascontiguousarray(w))[None, None]
    return torch.nn.functional.conv2d(x, k, padding="same")[0, 0].numpy()


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NotInstalled(name)
    return path


def _run(args: list[str]) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{os.path.basename(args[0])} took more than {_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise RuntimeError(f"{os.path.basename(args[0])}: {last}")


def _through_files(
    make_args: Callable[[str, str, NDArray[np.float64], str], list[str]],
) -> Callable[[NDArray[np.uint8], NDArray[np.float64]], NDArray]:
    """A command-line peer: PNG in, PNG out, in a temporary folder."""

    def run(img: NDArray[np.uint8], w: NDArray[np.float64]) -> NDArray:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="convcli-peers-") as tmp:
            src, dst = os.path.join(tmp, "in.png"), os.path.join(tmp, "out.png")
            Image.fromarray(img, mode="L").save(src)
            _run(make_args(src, dst, w, tmp))
            with Image.open(dst) as out:
                return np.asarray(out.convert("L"))

    return run


def _numbers(w: NDArray[np.float64], sep: str = ",") -> str:
    return sep.join(repr(float(v)) for v in w.ravel())


def _vips_args(src: str, dst: str, w: NDArray[np.float64], tmp: str) -> list[str]:
    mat = os.path.join(tmp, "kernel.mat")
    rows = "\n".join(" ".join(repr(float(v)) for v in row) for row in w)
    with open(mat, "w") as fh:
        fh.write(f"{w.shape[1]} {w.shape[0]}\n{rows}\n")
    return [_program("vips"), "conv", src, dst, mat]


def _im_convolve(src: str, dst: str, w: NDArray[np.float64], tmp: str) -> list[str]:
    return [_program("convert"), src, "-convolve", _numbers(w), dst]


def _im_morphology(src: str, dst: str, w: NDArray[np.float64], tmp: str) -> list[str]:
    spec = f"{w.shape[1]}x{w.shape[0]}: " + " ".join(_numbers(row) for row in w)
    return [_program("convert"), src, "-morphology", "Convolve", spec, dst]


def _python_version(*packages: str) -> Callable[[], str]:
    """The version of the first of ``packages`` installed (NotInstalled if none is)."""

    def version() -> str:
        for package in packages:
            try:
                return importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                continue
        raise NotInstalled(packages[0])

    return version


def _program_version(name: str, flag: str, marker: str) -> Callable[[], str]:
    """The version a program prints; a program of that name that fails, or whose first line
    does not name ``marker``, is another program (Windows' ``convert.exe``, a stand-in
    script), so the peer is not installed."""

    def version() -> str:
        path = _program(name)
        try:
            done = subprocess.run([path, flag], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        first = (done.stdout.strip().splitlines() or ["?"])[0]
        if done.returncode != 0 or marker.lower() not in first.lower():
            raise NotInstalled(name)
        found = re.search(r"\d+(\.\d+)+(-\d+)?", first)
        return found.group(0) if found else "?"

    return version


#: name, library, run, what it calls itself, how to get its version
PEERS: tuple[tuple[Peer, Callable[[], str]], ...] = (
    (Peer("scipy.ndimage.convolve", "scipy", _scipy_ndimage("convolve"), "convolve"),
     _python_version("scipy")),
    (Peer("scipy.ndimage.correlate", "scipy", _scipy_ndimage("correlate"), "correlate"),
     _python_version("scipy")),
    (Peer("scipy.signal.convolve2d", "scipy", _scipy_signal("convolve2d"), "convolve"),
     _python_version("scipy")),
    (Peer("scipy.signal.correlate2d", "scipy", _scipy_signal("correlate2d"), "correlate"),
     _python_version("scipy")),
    (Peer("cv2.filter2D", "opencv", _opencv, "convolve (filter2D)"),
     _python_version("opencv-python-headless", "opencv-python", "opencv-contrib-python")),
    (Peer("PIL.ImageFilter.Kernel", "pillow", _pillow, "convolution kernel"),
     _python_version("pillow")),
    (Peer("torch.nn.functional.conv2d", "torch", _torch, "convolution"),
     _python_version("torch")),
    (Peer("vips conv", "vips", _through_files(_vips_args), "convolution"),
     _program_version("vips", "--version", "vips")),
    (Peer("convert -convolve", "imagemagick", _through_files(_im_convolve), "convolve"),
     _program_version("convert", "-version", "ImageMagick")),
    (Peer("convert -morphology Convolve", "imagemagick", _through_files(_im_morphology),
          "convolve"), _program_version("convert", "-version", "ImageMagick")),
)  # fmt: skip


def probe_peer(peer: Peer, version: Callable[[], str]) -> PeerResult:
    """Run one peer on the impulse with both kernels and identify what it computed."""
    try:
        found = version()
    except NotInstalled:
        return PeerResult(peer, "not installed")
    result = PeerResult(peer, "ok", version=found)
    img = impulse()
    source = from_array(img / 255.0, depth="8")
    for kernel, slot in ((ODD_KERNEL, "odd"), (EVEN_KERNEL, "even")):
        try:
            out = np.asarray(peer.run(img, kernel.weights))
        except NotInstalled:
            return PeerResult(peer, "not installed")
        except NotSupported as exc:
            if slot == "odd":
                return PeerResult(peer, "failed", version=found, message=str(exc))
            result.even_message = f"n/a ({exc})"
            continue
        except Exception as exc:  # noqa: BLE001 - a peer's own failure is a finding
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if slot == "odd":
                return PeerResult(peer, "failed", version=found, message=message)
            result.even_message = f"failed: {message}"
            continue
        if out.shape != img.shape:
            message = f"returned shape {out.shape} for a {img.shape} image"
            if slot == "odd":
                return PeerResult(peer, "failed", version=found, message=message)
            result.even_message = f"failed: {message}"
            continue
        is_float = np.issubdtype(out.dtype, np.floating)
        result.output_type = "float" if is_float else str(out.dtype)
        depth = "float" if is_float else "8"
        ident = identify(source, out.astype(np.float64) / 255.0, kernel, output_depth=depth)
        setattr(result, slot, ident)
    return result


def probe_peers(names: list[str] | None = None) -> list[PeerResult]:
    """Every peer (or those named), in the order of :data:`PEERS`."""
    chosen = [(p, v) for p, v in PEERS if names is None or p.name in names]
    return [probe_peer(p, v) for p, v in chosen]


def markdown_table(results: list[PeerResult]) -> str:
    """The results as a Markdown table (the README's, generated)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in r.row()) + " |")
    return "\n".join(lines)
