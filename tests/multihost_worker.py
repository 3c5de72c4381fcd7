"""One process of a multi-process ebm_jax run on CPU (the README's multi-host recipe).

Launch ``--num-processes`` copies, one ``--process-id`` each, with the same
``--coordinator`` address; with ``--num-processes 1 --slices N`` it is the
one-process reference for N processes. Each process

1. runs ``ej.run_chains`` on its own slice of the chains with its own key
   (``jax.random.fold_in(key, process_index)``), on its local devices, and
   gathers every process's samples with ``process_allgather``;
2. runs a data-parallel ``ej.training.fit`` (sliced score matching on a small
   MLP) and a PCD ``fit`` whose chain buffer is split over all processes'
   devices, checkpointed after 15 steps and resumed to 30, then gathers the
   chains.

Process 0 writes everything to ``--out`` (an ``.npz``).
"""

from __future__ import annotations

import argparse
import functools

import jax

NUM_CHAINS_PER_PROCESS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--coordinator", default="127.0.0.1:12355")
    parser.add_argument("--out", required=True)
    parser.add_argument("--slices", type=int, default=None, help="chain slices (one process)")
    args = parser.parse_args()
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )

    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.experimental import multihost_utils

    import ebm_jax as ej

    def gather(array, tiled):
        if jax.process_count() == 1:
            return np.asarray(array)
        return np.asarray(multihost_utils.process_allgather(array, tiled=tiled))

    # 1. Chains: each process its own slice and key, gathered afterwards. One kernel for
    # every slice: the reference then compiles its chains once, not once per slice.
    algorithm = ej.samplers.mala(lambda x: -0.5 * jnp.sum(x**2), 0.5)

    def chains_of(process: int) -> jax.Array:
        positions = jax.random.normal(jax.random.key(10 + process), (NUM_CHAINS_PER_PROCESS, 2))
        key = jax.random.fold_in(jax.random.key(0), process)
        return ej.run_chains(key, algorithm, positions, 30, progress=False).samples

    if jax.process_count() == 1:  # the reference makes every process's slice itself
        slices = args.slices or args.num_processes
        samples = np.stack([np.asarray(chains_of(p)) for p in range(slices)])
    else:
        samples = gather(chains_of(jax.process_index()), tiled=False)

    # 2. Data-parallel fit over every process's devices, in whole chunks (a shorter last
    # chunk would compile a second program).
    data = ej.data.two_moons(jax.random.key(1), 512)
    model = ej.models.MLPLogDensity(hidden_sizes=(32, 32))
    params = model.init(jax.random.key(2), data[0])
    fitted = ej.training.fit(
        jax.random.key(3),
        ej.losses.sliced_score_matching(model.apply),
        params,
        optax.adam(1e-2),
        data,
        num_steps=45,
        batch_size=64,
        chunk_size=15,
        progress=False,
    )
    flat = jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(fitted.params)])
    pcd = ej.losses.persistent_contrastive_divergence(
        lambda mean, x: -0.5 * jnp.sum((x - mean) ** 2), step_size=0.3, num_steps=2
    )
    # Checkpointed halfway, then resumed: the chain buffer split over the processes
    # is gathered into process 0's file and split again on resume.
    pcd_fit = functools.partial(
        ej.training.fit,
        jax.random.key(4),
        pcd.loss,
        jnp.zeros(2),
        optax.sgd(0.1),
        data + 3.0,
        batch_size=32,
        chunk_size=15,
        loss_state=pcd.init(jax.random.normal(jax.random.key(5), (64, 2))),
        checkpoint_path=args.out + ".pcd.msgpack",
        progress=False,
    )
    pcd_fit(num_steps=15)
    pcd_fit = pcd_fit(num_steps=30)
    if jax.process_index() == 0:
        np.savez(
            args.out,
            samples=samples,
            ssm_losses=np.asarray(fitted.losses),  # host values, the same in every process
            ssm_params=gather(flat, tiled=True),
            pcd_mean=gather(pcd_fit.params, tiled=True),
            pcd_chains=gather(pcd_fit.loss_state.positions, tiled=True),
        )
    elif jax.process_count() > 1:  # every process takes part in the gathers
        gather(flat, tiled=True)
        gather(pcd_fit.params, tiled=True)
        gather(pcd_fit.loss_state.positions, tiled=True)


if __name__ == "__main__":
    main()
