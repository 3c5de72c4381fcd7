"""posteriordb reference posteriors: the Stan model, the data and the reference summary.

Copied from github.com/stan-dev/posteriordb at commit
28f8d3d6e975315f42aa274a8399f21e07a43b30: ``reference`` holds posterior means
and sds of the constrained quantities (``names``, posteriordb's order) with
their Monte Carlo standard errors ``mean_se`` and ``sd_se`` (ArviZ, from the
10 x 1000 reference draws posteriordb made with Stan's NUTS). Compare a
sampler's estimate with ``z = (estimate - mean) / sqrt(MCSE**2 + mean_se**2)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAMES = ("eight_schools_noncentered", "garch11")
"""The stored references, by file stem (``ebm_jax.densities`` factory name)."""


def load_reference(name: str) -> dict[str, Any]:
    """The JSON record ``{"name", "source", "stan_model", "data", "reference"}`` of ``name``."""
    if name not in NAMES:
        raise ValueError(f"name must be one of {NAMES}, got {name!r}")
    return json.loads((Path(__file__).parent / f"{name}.json").read_text())
