"""How every demo section reports: headers, warnings and figures, quick mode marked on each.

A section prints a summary, appends its failed checks to the summary's
``"warnings"`` list (printed as lines starting with ``WARNING:``) and draws one
figure. In quick mode (``python -m ebm_jax demo --quick``, a smoke test at
tiny sizes) every header, figure title and JSON summary says so, because
quick-mode numbers are not the demo's results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

QUICK_LABEL = "quick mode: tiny sizes, a smoke test, numbers not representative"
"""What quick mode adds to every section header and figure title."""

RHAT_THRESHOLD = 1.01
"""Split R̂ above this means the chains have not mixed (Vehtari et al. 2021, §3.1)."""


def header(title: str, *, quick: bool) -> str:
    """A section's first printed line, with the quick-mode label when ``quick``."""
    return f"== {title}" + (f"  [{QUICK_LABEL}]" if quick else "")


def print_warnings(warnings: list[str]) -> None:
    """Print each warning on its own line, starting ``WARNING:``."""
    for warning in warnings:
        print(f"WARNING: {warning}")


def rhat_warnings(rhat: list[float], *, what: str) -> list[str]:
    """A warning for every split R̂ above :data:`RHAT_THRESHOLD`.

    Args:
      rhat: one R̂ per coordinate.
      what: the chains' name in the warning.

    Returns:
      The warnings, empty when every R̂ is at most the threshold.

    Examples:
      >>> rhat_warnings([1.003, 1.05], what="MALA chains")
      ['MALA chains: split R-hat 1.050 > 1.01 for coordinate 1: the chains have not mixed']
      >>> rhat_warnings([1.003, 1.004], what="MALA chains")
      []
    """
    return [
        f"{what}: split R-hat {value:.3f} > {RHAT_THRESHOLD} for coordinate {index}: "
        "the chains have not mixed"
        for index, value in enumerate(rhat)
        if not value <= RHAT_THRESHOLD  # NaN fails too
    ]


def gap_warnings(
    what: str, metric: str, value: float, floor: float, start: float, *, fraction: float = 0.5
) -> list[str]:
    """A warning when samples closed less than ``fraction`` of the gap from noise to data.

    ``floor`` is the metric between data and data (what a perfect sampler
    scores), ``start`` between the sampler's starting noise and data. Samples
    whose metric lies closer to ``start`` than that are nearer the noise they
    started from than the data; a metric that scores the noise no worse than
    the floor cannot judge samples at all.

    Examples:
      >>> print(*gap_warnings("digits", "Fréchet distance", 40.9, 4.95, 51.9))
      ... # doctest: +NORMALIZE_WHITESPACE
      digits: Fréchet distance 40.9 closed only 23% of the gap from the starting noise's
      51.9 to the data floor 4.95
      >>> gap_warnings("digits", "Fréchet distance", 9.0, 4.95, 51.9)
      []
    """
    if not start > floor:
        return [
            f"{what}: {metric} scores the starting noise ({start:.3g}) no worse than the data "
            f"floor ({floor:.3g}), so it cannot judge the samples"
        ]
    closed = (start - value) / (start - floor)
    if closed >= fraction:
        return []
    return [
        f"{what}: {metric} {value:.3g} closed only {max(closed, 0.0):.0%} of the gap from "
        f"the starting noise's {start:.3g} to the data floor {floor:.3g}"
    ]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(title: str, *, quick: bool, **subplots: Any) -> tuple[Any, Any]:
    """``plt.subplots`` with constrained layout and a suptitle that says quick mode."""
    plt = pyplot()
    fig, axes = plt.subplots(layout="constrained", **subplots)
    fig.suptitle(title + (f"\n[{QUICK_LABEL}]" if quick else ""))
    return fig, axes


def save(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` (nothing clipped) and close it."""
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


def tile_digits(images: Any, columns: int) -> np.ndarray:
    """8×8 images side by side on a NaN background (blank in ``imshow``), one pixel apart."""
    images = np.asarray(images).reshape(-1, 8, 8)
    rows = -(-len(images) // columns)
    canvas = np.full((rows * 9 + 1, columns * 9 + 1), np.nan)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        canvas[row * 9 + 1 : row * 9 + 9, column * 9 + 1 : column * 9 + 9] = image
    return canvas
