"""What an exact task Gramian costs when written by hand for mode_step_time's MLP.

The Gramian-only mode (``gradient_mode="gramian"``) works for any JAX loss: one VJP and one JVP
per task. A Gramian written for this very MLP can do less: back-propagate only the K activation
gradients ``δ_k`` and take each dense layer's block from per-example inner products,

    G_ij = Σ_{b,c} (x_b · x_c)(δ_ib · δ_jc),

never forming a per-task weight gradient; the update reuses the δ's (``Σ_k w_k δ_k``). This
script checks that hand-written step against the stacked Gramian and times it, the generic
Gramian-only step and the EW step side by side (median of per-round ratios, random order,
bursts of three calls whose first is not timed). It is a reference point for the generic
mode, not a feature: it knows the architecture.

Usage:
  python benchmarks/exact_gramian_floor.py [--tasks 10] [--repeats 30]
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import optax
from mode_step_time import interleaved_samples, mlp_problem, paired_ratios

import autoscale_jax as asj

HIGHEST = jax.lax.Precision.HIGHEST


def layer_gramian(inputs: jax.Array, deltas: jax.Array) -> jax.Array:
    """One dense layer's Gramian block from its inputs [B, d_in] and task deltas [K, B, d_out]."""
    inner = jnp.dot(inputs, inputs.T, precision=HIGHEST)  # [B, B]
    mixed = jnp.einsum("bc,kco->kbo", inner, deltas, precision=HIGHEST)
    return jnp.einsum("ibo,jbo->ij", deltas, mixed, precision=HIGHEST)


def gramian_and_gradient(params: dict, x: jax.Array, y: jax.Array, weights: jax.Array) -> tuple:
    """The exact [K, K] Gramian over all parameters and the gradient of Σ_k w_k L_k."""
    pre1 = x @ params["layer1"]
    hidden = jax.nn.relu(pre1)
    pre2 = hidden @ params["layer2"]
    z = jax.nn.relu(pre2)
    residual = (2.0 / x.shape[0]) * (z @ params["heads"] - y)  # [B, K]: ∂L_k/∂prediction_k
    delta2 = residual.T[:, :, None] * params["heads"].T[:, None, :] * (pre2 > 0)
    delta1 = jnp.einsum("kbo,io->kbi", delta2, params["layer2"]) * (pre1 > 0)
    head_grads = z.T @ residual  # [d, K]: column k is head k's gradient (a head per task)
    G = (
        layer_gramian(x, delta1)
        + layer_gramian(hidden, delta2)
        + jnp.diag(jnp.sum(head_grads * head_grads, axis=0))
    )
    grads = {
        "layer1": x.T @ jnp.einsum("k,kbi->bi", weights, delta1),
        "layer2": hidden.T @ jnp.einsum("k,kbo->bo", weights, delta2),
        "heads": head_grads * weights,
    }
    return G, grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    k = args.tasks
    params, x, y, at_output, _ = mlp_problem(k)
    optimizer, ones = optax.adam(1e-3), jnp.ones(k)

    G, grads = jax.jit(gramian_and_gradient)(params, x, y, ones)
    _, stacked = asj.task_gramian(at_output, mode="stacked")(params, x, y)
    reference = jax.grad(lambda p: jnp.sum(at_output(p, x, y)))(params)
    g_error = float(jnp.max(jnp.abs(G - stacked.gramian)) / jnp.max(jnp.abs(stacked.gramian)))
    grad_error = max(
        float(jnp.max(jnp.abs(grads[n] - reference[n])) / jnp.max(jnp.abs(reference[n])))
        for n in grads
    )
    print(f"K={k}: max relative error vs stacked: Gramian {g_error:.1e}, gradient {grad_error:.1e}")

    def hand_written_step(p: dict, state: Any, weights: jax.Array) -> tuple:
        G, g = gramian_and_gradient(p, x, y, weights)
        updates, state = optimizer.update(g, state, p)
        return optax.apply_updates(p, updates), state, G

    ew = asj.linear_scalarization_step(at_output, ones, optimizer)
    generic = asj.multitask_train_step(
        at_output, asj.autoscale(k, 10**6), optimizer, gradient_mode="gramian"
    )
    ew_step, hand_step, generic_step = (
        jax.jit(ew.step),
        jax.jit(hand_written_step),
        jax.jit(generic.step),
    )
    ew_state, hand_state = ew.init(params), optimizer.init(params)
    generic_state = generic_step(params, generic.init(params), x, y)[1]  # past the warm start
    runs = {
        "EW": lambda: ew_step(params, ew_state, x, y),
        "exact, hand-written for this MLP": lambda: hand_step(params, hand_state, ones),
        "exact, gradient_mode='gramian' (AutoScale phase 1)": lambda: generic_step(
            params, generic_state, x, y
        ),
    }
    ratios = paired_ratios(interleaved_samples(runs, args.repeats), "EW")
    print("| step | time / EW step |")
    print("|---|---:|")
    for name, ratio in ratios.items():
        print(f"| {name} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
