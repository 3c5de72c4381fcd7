"""The training recipe both diffusion parts share: a noise-conditional score by eq. (11.16)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, cast

import jax
import optax

from ebm_jax import diffusion, models, training

NoiseConditionalApply = Callable[[Any, jax.Array, jax.Array], jax.Array]
"""``model.apply(params, x, beta)``: :math:`S_w(x, \\beta)` of one sample."""


def fit_noise_conditional_score(
    rng_key: jax.Array,
    model: models.NoiseConditionalScore,
    noise_schedule: diffusion.NoiseSchedule,
    train: jax.Array,
    *,
    learning_rate: float,
    num_steps: int,
    batch_size: int,
    progress: bool | None,
) -> tuple[Callable[[jax.Array, jax.Array], jax.Array], training.FitResult, float]:
    """Fit ``model`` by the ε-weighted eq. (11.16); return ``S_w(x, β)``, the fit and seconds.

    Adam on a cosine-decayed step size (down to 1% of ``learning_rate``).
    """
    # Module.apply is typed for every Flax use; this one returns S_w(x, β) of one sample.
    score_apply = cast(NoiseConditionalApply, model.apply)
    init_key, fit_key = jax.random.split(rng_key)
    start = time.perf_counter()
    fit = training.fit(
        fit_key,
        diffusion.denoising_loss(score_apply, schedule=noise_schedule),
        model.init(init_key, train[0], 0.5),
        optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.01)),
        train,
        num_steps=num_steps,
        batch_size=batch_size,
        chunk_size=min(500, num_steps),
        progress=False if progress is None else progress,
    )
    seconds = time.perf_counter() - start
    return functools.partial(score_apply, fit.params), fit, seconds
