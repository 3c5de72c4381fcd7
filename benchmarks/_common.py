"""Timing and reporting shared by the benchmark scripts.

Contenders are timed side by side in one process, in interleaved rounds whose
order rotates, so a shared or throttled machine slows all of them alike;
ratios are medians of per-round ratios. Compile time (first call minus the
steady-state median) is reported separately from run time.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

import ebm_jax as ej

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def wall_time(fn: Callable[[], Any]) -> float:
    """Seconds for one call of ``fn``, waiting for its device results."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def time_side_by_side(
    contenders: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, dict[str, Any]]:
    """First-call and steady-state wall times, the contenders interleaved round by round."""
    first = {name: wall_time(fn) for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(wall_time(contenders[name]))
    results = {}
    for name in names:
        median = float(np.median(times[name]))
        results[name] = {
            "first_call_s": first[name],
            "median_s": median,
            "min_s": float(np.min(times[name])),
            "times_s": times[name],
            "compile_s": max(0.0, first[name] - median),
        }
    return results


def paired_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float:
    """Median over rounds of the time ratio of two contenders timed back to back.

    Both ran in the same round under the same machine load, so the per-round
    ratio cancels load drifts that the ratio of the two medians would keep.
    """
    ratios = np.asarray(numerator["times_s"]) / np.asarray(denominator["times_s"])
    return float(np.median(ratios))


def environment(*packages: str) -> dict[str, Any]:
    """Versions, backend and machine facts recorded beside every result."""
    device = jax.devices()[0]

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "jax": jax.__version__,
        "jaxlib": version("jaxlib"),
        **{package: version(package) for package in packages},
        "ebm_jax": ej.__version__,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "x64": bool(jax.config.jax_enable_x64),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON (never pickle), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}", flush=True)
