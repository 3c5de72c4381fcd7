"""Everything that runs in float32 runs with ``jax_enable_x64`` on, and keeps the input dtype.

``jax_enable_x64`` is process-wide, so the matrix runs in a subprocess. For
float32 and float64 inputs: one step of every continuous kernel, ``adapt``
(MALA and RWMH, each preconditioner kind), ``fit``, AIS and a diffusion
sampler. Under ``run_chains`` (samples, info, and for MALA streamed stats,
with burn-in and thinning): every kernel with float32 positions, which
float64 parameters could promote, and MALA with float64 positions. A
silently promoted carry would fail inside ``lax.scan`` ("carry input and
carry output must have equal types") or return the wrong dtype; both are
caught here.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers import run_python

SCRIPT = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import optax
    import ebm_jax as ej

    def logdensity_fn(x):
        return -0.5 * jnp.sum(x**2 / jnp.array([1.0, 4.0]))

    def dict_logdensity_fn(x):
        return -0.5 * (x["a"] ** 2 + jnp.sum(x["b"] ** 2))

    def check(name, value, dtype):
        for leaf in jax.tree.leaves(value):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert leaf.dtype == dtype, f"{name}: {leaf.dtype} != {dtype}"
                assert bool(jnp.all(jnp.isfinite(leaf))), f"{name}: not finite"

    import sys
    for dtype in {"float32": (jnp.float32,), "float64": (jnp.float64,)}[sys.argv[1]]:
        positions = jax.random.normal(jax.random.key(0), (8, 2), dtype)
        kernels = {
            "mala": ej.samplers.mala(logdensity_fn, 0.3),
            "mala-dense": ej.samplers.mala(
                logdensity_fn, 0.3, inverse_mass_matrix=np.eye(2, dtype=np.float64)
            ),
            "ula": ej.samplers.ula(logdensity_fn, 0.1, noise_variance=0.15),
            "rwmh": ej.samplers.rwmh(logdensity_fn, 0.8, inverse_mass_matrix=np.ones(2)),
            "metropolis_within_gibbs": ej.samplers.metropolis_within_gibbs(logdensity_fn, 0.8),
        }
        for name, kernel in kernels.items():
            state, info = kernel.step(jax.random.key(1), kernel.init(positions[0]))
            check(f"{name} step", state.position, dtype)
            # float32 positions with float64 parameters are where a carry could be promoted:
            # every kernel runs there; float64 positions run MALA only.
            if dtype == jnp.float64 and name != "mala":
                continue
            for collect in ("samples", "stats") if name == "mala" else ("samples",):
                result = ej.run_chains(
                    jax.random.key(2), kernel, positions, 12, num_burnin=3, thin=2,
                    collect=collect, collect_info=True,
                )
                check(f"{name} {collect}", (result.samples, result.mean, result.variance,
                      result.final_state.position, result.acceptance_rate), dtype)
        tree = {"a": jnp.zeros(8, dtype), "b": jnp.zeros((8, 3), dtype)}
        result = ej.run_chains(
            jax.random.key(2), ej.samplers.mala(dict_logdensity_fn, 0.3), tree, 10
        )
        check("pytree", result.samples, dtype)
        # Each preconditioner kind once over the two dtypes (every adapt compiles anew).
        adapt_cases = {
            jnp.float32: (("mala", "dense"), ("rwmh", None)),
            jnp.float64: (("mala", "dense"), ("rwmh", "diagonal")),
        }
        for sampler, preconditioner in adapt_cases[dtype]:
            warm = ej.samplers.adapt(
                jax.random.key(3), sampler, logdensity_fn, positions, 40,
                preconditioner=preconditioner,
            )
            check(f"adapt {sampler} {preconditioner}", (warm.states.position,
                  warm.parameters), dtype)

        params = {"mean": jnp.zeros(2, dtype)}
        data = jax.random.normal(jax.random.key(4), (64, 2), dtype) + 1.0
        loss = ej.losses.score_matching(lambda p, x: -0.5 * jnp.sum((x - p["mean"]) ** 2))
        fitted = ej.training.fit(
            jax.random.key(5), loss, params, optax.adam(0.1), data, num_steps=20, batch_size=16
        )
        check("fit", (fitted.params, fitted.losses), dtype)

        base = ej.partition.gaussian_base(jnp.zeros(2, dtype), jnp.asarray(2.0, dtype))
        ais = ej.partition.annealed_importance_sampling(
            jax.random.key(6), logdensity_fn, base, num_chains=16, num_temperatures=20,
            step_size=0.3,
        )
        check("ais", (ais.log_partition, ais.positions, ais.log_weights), dtype)

        schedule = ej.diffusion.linear_schedule(20)
        drawn = ej.diffusion.ancestral_sample(
            jax.random.key(7), lambda x, beta: -x, schedule, jnp.zeros((8, 2), dtype)
        )
        check("ancestral_sample", drawn.samples, dtype)
        print("ok", jnp.dtype(dtype).name)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inputs_keep_their_dtype_under_x64(dtype):
    # Dtypes are fixed when JAX traces, before XLA's backend runs (QUICK_COMPILE_ENV).
    completed = run_python(["-c", SCRIPT, dtype])
    assert completed.stdout.split() == ["ok", dtype]
