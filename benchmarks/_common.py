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
import jax.numpy as jnp
import numpy as np

import ebm_jax as ej

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPOSITORY_ROOT / "benchmarks" / "results"
QUICK_RESULTS_DIR = REPOSITORY_ROOT / "out" / "benchmarks" / "quick"
QUICK_NOTE = "[quick mode: tiny sizes, not results]"


def quick_note(quick: bool) -> str:
    """``"  [quick mode: tiny sizes, not results]"`` for a ``--quick`` run, else ``""``.

    Appended to a run's printed header, its Markdown title, its figures' titles
    and its "wrote" lines, so that a smoke run's numbers are not read as results.
    """
    return f"  {QUICK_NOTE}" if quick else ""


def output_path(published: str, given: Path | None, *, quick: bool) -> Path:
    """Where a run writes: ``given`` if given, else ``published`` under the results folder.

    ``published`` is relative to :data:`RESULTS_DIR`, the published results. A
    smoke run's numbers must not overwrite them, so a ``--quick`` run without an
    explicit path writes to the same relative path under
    :data:`QUICK_RESULTS_DIR` (in ``out/``, which git ignores) instead.
    """
    if given is not None:
        return given
    return (QUICK_RESULTS_DIR if quick else RESULTS_DIR) / published


def out_help(what: str, published: str) -> str:
    """Help of a path option: ``what`` it names and its two defaults (:func:`output_path`)."""
    full, quick = (
        folder.relative_to(REPOSITORY_ROOT) / published
        for folder in (RESULTS_DIR, QUICK_RESULTS_DIR)
    )
    return f"{what} (default {full}; {quick} with --quick)"


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


def optional_blackjax() -> Any:
    """BlackJAX, or ``None`` when it is not installed (its columns are then left empty).

    Imported on first use only, so a script's subprocesses that never compare
    against it do not pay for the import.
    """
    try:
        import blackjax
    except ImportError:
        return None
    return blackjax


def loop_from(body: Callable[[Any, jax.Array], Any]) -> Callable[[Any, int], Any]:
    """``run(carry, num_iterations)``: ``body`` iterated under one jit, one key per iteration.

    The trip count is a run-time argument, so calibrating it to the machine
    costs no recompilation; the parameters travel in ``carry``, so the
    compiler cannot fold them into the program as constants.
    """
    rng_key = jax.random.key(1)

    @jax.jit
    def run(carry: Any, num_iterations: jax.Array) -> Any:
        def one_iteration(iteration: jax.Array, carry: Any) -> Any:
            return body(carry, jax.random.fold_in(rng_key, iteration))

        return jax.lax.fori_loop(0, num_iterations, one_iteration, carry)

    return run


def looped(body: Callable[[Any, jax.Array], Any], carry: Any) -> Callable[[int], Any]:
    """``run(num_iterations)``: :func:`loop_from` ``(body)`` from a fixed ``carry``."""
    run = loop_from(body)
    return lambda num_iterations: run(carry, num_iterations)


def mala_floor_step(
    logdensity_fn: Callable[[jax.Array], jax.Array], step_size: float, num_chains: int
) -> tuple[Callable[[Any, jax.Array], Any], Callable[[jax.Array], Any]]:
    """The least a MALA step can do: one batched ``value_and_grad``, the draws and a select.

    Returns ``(step(carry, rng_key) -> carry, init(positions) -> carry)`` for
    ``(num_chains, d)`` positions.
    """
    value_and_grad = jax.vmap(jax.value_and_grad(logdensity_fn))

    def step(carry: Any, rng_key: jax.Array) -> Any:
        position, logdensity, grad = carry
        noise_key, uniform_key = jax.random.split(rng_key)
        noise = jax.random.normal(noise_key, position.shape, position.dtype)
        uniform = jax.random.uniform(uniform_key, (num_chains,), position.dtype)
        proposal = position + step_size * grad + jnp.sqrt(2.0 * step_size) * noise
        new_logdensity, new_grad = value_and_grad(proposal)
        accept = jnp.log(uniform) < new_logdensity - logdensity
        row = accept[:, None]
        return (
            jnp.where(row, proposal, position),
            jnp.where(accept, new_logdensity, logdensity),
            jnp.where(row, new_grad, grad),
        )

    return step, lambda positions: (positions, *value_and_grad(positions))


def compile_and_probe(run: Callable[[int], Any]) -> tuple[float, float]:
    """Compile seconds (first call minus steady state, one iteration) and the steady call."""
    first = wall_time(lambda: run(1))
    steady = min(wall_time(lambda: run(1)) for _ in range(2))
    return max(0.0, first - steady), steady


def iterations_per_call(run: Callable[[int], Any], one_call_s: float, target_s: float) -> int:
    """Iterations per timed call, so that a call lasts about ``target_s``."""
    estimate = target_s / max(one_call_s, 1e-9)
    if estimate > 10:  # one iteration is mostly dispatch: re-measure on ten
        estimate = target_s / max(wall_time(lambda: run(10)) / 10, 1e-9)
    return int(np.clip(estimate, 1, 100_000))


def digits_train(scale: str) -> tuple[jax.Array, str]:
    """The digits' train split, or random data of its shape without scikit-learn."""
    try:
        return jnp.asarray(ej.data.load_digits(scale=scale).train), "digits"
    except ImportError:
        # The timings depend on the shape of the data, not on its values.
        shape = (1438, 64)
        if scale == "binary":
            draw = jax.random.bernoulli(jax.random.key(2), 0.5, shape).astype(jnp.float32)
        else:
            draw = jax.random.normal(jax.random.key(2), shape)
        return draw, "random data of the digits' shape (scikit-learn missing)"


def write_json(path: Path, report: dict[str, Any], *, quick: bool) -> None:
    """Write ``report`` as indented JSON (never pickle), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}{quick_note(quick)}", flush=True)


def toy_grid_figure(plt: Any, num_rows: int, num_columns: int) -> tuple[Any, Any]:
    """A grid of 2-D toy panels sharing axes: ``(figure, axes[row, column])``."""
    return plt.subplots(
        num_rows,
        num_columns,
        figsize=(2.3 * num_columns + 1.2, 2.3 * num_rows + 1.0),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )


def save_figure(figure: Any, path: Path, *, quick: bool, dpi: int = 110) -> None:
    """Save and close a matplotlib ``figure``, its title stamped when ``quick``.

    The stamp is a line of the suptitle, which constrained layout (every
    benchmark figure uses it) keeps inside the saved image.
    """
    if quick:
        title = figure.get_suptitle()
        if title:
            # Edited in place: ``figure.suptitle`` would reset a custom font size.
            suptitle = next(text for text in figure.texts if text.get_text() == title)
            suptitle.set(text=f"{title}\n{QUICK_NOTE}", color="firebrick")
        else:
            figure.suptitle(QUICK_NOTE, color="firebrick")
    figure.savefig(path, dpi=dpi)
    import matplotlib.pyplot as plt  # only reached with a figure, so with matplotlib

    plt.close(figure)
    print(f"wrote {path}{quick_note(quick)}", flush=True)
