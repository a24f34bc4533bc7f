"""Memory and wall time of the streamed search against the stacked one, for two rung lengths.

The streamed search (``asj.search.WeightSearch``) compiles one chunk program (a ``lax.scan``
over ``chunk_size`` stacked batches, vmapped over the live candidates) and feeds it chunk by
chunk; the stacked search (``asj.search.validation_search``) takes every batch of the rung as
one array with a leading step axis. XLA's ``memory_analysis()`` of each compiled program gives
its argument and temporary bytes: the chunk program's do not depend on the rung length, the
stacked program's arguments grow with it. Wall time: one rung of 5 candidates (scoring
included) after compilation, streamed (batches stacked per chunk on the host, one dispatch per
chunk) and stacked (the batches stacked once, then one call), on this machine's default device.

Run: ``python benchmarks/search_memory.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax

import autoscale_jax as asj

K, BATCH, DIM, HIDDEN, CHUNK = 3, 256, 64, 128, 16
ALPHAS = (1.0, 1.5, 2.0, 2.5, 3.0)


def problem():
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(keys[0], (4096, DIM))
    y = jnp.tanh(x @ jax.random.normal(keys[1], (DIM, K))) * jnp.array([1.0, 10.0, 0.1])
    params = {
        "trunk": jax.random.normal(keys[2], (DIM, HIDDEN)) / DIM**0.5,
        "heads": jax.random.normal(keys[3], (HIDDEN, K)) / HIDDEN**0.5,
    }

    def loss_fn(p, b):
        return jnp.mean((jnp.tanh(b[0] @ p["trunk"]) @ p["heads"] - b[1]) ** 2, axis=0)

    def batch(t):
        idx = (t * BATCH + jnp.arange(BATCH)) % x.shape[0]
        return x[idx], y[idx]

    def score(p):
        return -jnp.sum(loss_fn(p, (x[:512], y[:512])) / jnp.array([1.0, 100.0, 0.01]))

    return loss_fn, params, batch, score


def mib(memory) -> str:
    return f"{memory.argument_size_in_bytes / 2**20:.2f} / {memory.temp_size_in_bytes / 2**20:.2f}"


def measure(length: int) -> tuple[str, str, float, float]:
    loss_fn, params, batch, score = problem()
    stage = (asj.search.alpha_stage(ALPHAS, (length,)),)
    ws = asj.search.WeightSearch(
        loss_fn,
        optax.adam(1e-3),
        score,
        num_tasks=K,
        budget=CHUNK + length,
        estimation_steps=CHUNK,
        window=8,
        stages=stage,
        chunk_size=CHUNK,
        progress=False,
    )
    after_phase_one = ws.run(ws.init(params), batch, max_chunks=1)
    streamed_memory = ws.lower_chunk(after_phase_one, batch(0)).compile().memory_analysis()
    jax.block_until_ready(ws.run(after_phase_one, batch).params)  # compiles the rest
    start = time.perf_counter()
    jax.block_until_ready(ws.run(after_phase_one, batch).params)
    streamed = time.perf_counter() - start

    weights = jnp.asarray(after_phase_one.weights)
    p0 = jax.tree.map(lambda x: x[0], after_phase_one.params)
    o0 = jax.tree.map(lambda x: x[0], after_phase_one.opt_state)
    find = asj.search.validation_search(loss_fn, optax.adam(1e-3), score, rungs=(length,))

    def stack():
        return jax.tree.map(lambda *b: jnp.stack(b), *[batch(CHUNK + t) for t in range(length)])

    compiled = find.lower(weights, p0, o0, stack()).compile()
    start = time.perf_counter()
    jax.block_until_ready(compiled(weights, p0, o0, stack()).params)
    stacked = time.perf_counter() - start
    return mib(streamed_memory), mib(compiled.memory_analysis()), streamed, stacked


def main() -> None:
    print(f"device: {jax.devices()[0].device_kind}; K={K}, batch {BATCH}x{DIM}, hidden {HIDDEN},")
    print(f"5 candidates, chunk {CHUNK} steps; memory: arguments / temporaries in MiB")
    print()
    print(
        "| rung length | streamed chunk program | stacked program | streamed s | stacked s "
        "| streamed / stacked |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for length in (64, 512):
        streamed_memory, stacked_memory, streamed, stacked = measure(length)
        print(
            f"| {length} | {streamed_memory} | {stacked_memory} | {streamed:.3f} | "
            f"{stacked:.3f} | {streamed / stacked:.2f} |"
        )


if __name__ == "__main__":
    main()
