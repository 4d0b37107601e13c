"""The streaming engine: images flow from decoder to encoder in strips.

* :mod:`.strips`: the halo a kernel chain needs and the window of each strip;
* :mod:`.engine`: stored samples in, output samples out, strip by strip, on all cores;
* :mod:`.files`: file to file (:func:`filter_file`), and the per-image job that
  ``convcli batch`` runs on either executor.
"""

from __future__ import annotations

from .engine import Program, Stream, plan_program, stream_samples

__all__ = ["Program", "Stream", "plan_program", "stream_samples"]
