"""Small problems shared by the test modules (no test module imports another)."""

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp

SCALES = (1.0, 10.0, 0.1)  # target scales: losses differ by 100x from the middle task


def regression_problem(seed=0, num_samples=256, dim=8, hidden=16):
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    x = jax.random.normal(keys[0], (num_samples, dim))
    teacher = jax.random.normal(keys[1], (dim, 3))
    y = jnp.tanh(x @ teacher) * jnp.array(SCALES) + 0.01 * jax.random.normal(
        keys[2], (num_samples, 3)
    )
    params = {
        "trunk": jax.random.normal(keys[3], (dim, hidden)) / jnp.sqrt(dim),
        "heads": jax.random.normal(keys[4], (hidden, 3)) / jnp.sqrt(hidden),
    }

    def loss_fn(p, x, y):
        pred = jnp.tanh(x @ p["trunk"]) @ p["heads"]
        return jnp.mean((pred - y) ** 2, axis=0)

    return loss_fn, params, x, y


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Runs the block with 64-bit JAX arrays (jax 0.4.30 has no ``jax.enable_x64``).

    Two compiled programs that compute the same thing in a different order (one device vs
    eight, a fused path vs a chain) agree to float32 round-off only, which grows with the size
    of the computation and the number of training steps; in float64 they agree to ~1e-12, so a
    comparison there can use a tolerance that any real difference would break.
    """
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
