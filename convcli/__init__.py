"""convcli: exact convolution and correlation of images, with direct, FFT and auto backends.

The library never imports click or rich.  Public API::

    from convcli import convolve, correlate, Kernel, load_kernel, read_image, write_image

    >>> import numpy as np
    >>> from convcli import convolve, Kernel
    >>> img = np.zeros((5, 5), dtype=np.float32); img[2, 2] = 1
    >>> convolve(img, Kernel([[1, 2], [3, 4]]), backend="direct")[1:3, 1:3].tolist()
    [[1.0, 2.0], [3.0, 4.0]]

Names are imported on first use, so ``import convcli`` (and ``convcli --help``) is fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "convolve": "filtering",
    "correlate": "filtering",
    "filter_array": "filtering",
    "plan_filter": "filtering",
    "Plan": "filtering",
    "BACKENDS": "filtering",
    "BOUNDARY_MODES": "filtering",
    "Kernel": "kernels",
    "Symmetry": "kernels",
    "builtin_kernel": "kernels",
    "parse_spec": "kernels",
    "BUILTINS": "kernels",
    "load_kernel": "kernel_io",
    "parse_kernel_text": "kernel_io",
    "save_kernel": "kernel_io",
    "Image": "image_io",
    "ImageMeta": "image_io",
    "read_image": "image_io",
    "write_image": "image_io",
    "from_array": "image_io",
    "FilterOptions": "process",
    "FilterReport": "process",
    "filter_image": "process",
    "edge_image": "process",
    "filter_file": "pipeline.files",
    "FileReport": "pipeline.files",
    "filter_samples": "pipeline.engine",
    "read_samples": "image_io",
    "Samples": "image_io",
    "ConvcliError": "errors",
    "UsageError": "errors",
    "KernelError": "errors",
    "KernelSpecError": "errors",
    "KernelFileError": "errors",
    "ImageReadError": "errors",
    "ImageWriteError": "errors",
    "FilterError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convcli' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .errors import (  # noqa: F401
        ConvcliError,
        FilterError,
        ImageReadError,
        ImageWriteError,
        KernelError,
        KernelFileError,
        KernelSpecError,
        UsageError,
    )
    from .filtering import (  # noqa: F401
        BACKENDS,
        BOUNDARY_MODES,
        Plan,
        convolve,
        correlate,
        filter_array,
        plan_filter,
    )
    from .image_io import (  # noqa: F401
        Image,
        ImageMeta,
        Samples,
        from_array,
        read_image,
        read_samples,
        write_image,
    )
    from .kernel_io import load_kernel, parse_kernel_text, save_kernel  # noqa: F401
    from .kernels import BUILTINS, Kernel, Symmetry, builtin_kernel, parse_spec  # noqa: F401
    from .pipeline.engine import filter_samples  # noqa: F401
    from .pipeline.files import FileReport, filter_file  # noqa: F401
    from .process import FilterOptions, FilterReport, edge_image, filter_image  # noqa: F401
