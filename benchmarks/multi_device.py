"""8 host devices against 1: step times and weight agreement of AutoScale's phases.

Sets ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX starts (unless the
process was given flags already), then times on the MLP of ``mode_step_time.py``, K tasks:
EW, phase 1 (stacked and Gramian-only) and phase 2 (``one_gradient_step``), each on one device,
data parallel (batch sharded over 8) and with sharded parameters (hidden axes over 8). It also
trains AutoScale a few steps per guide in each layout and prints the largest relative weight
difference to one device. On a CPU the 8 "devices" share the same cores, so this measures the
partitioning overhead, not a speed-up; on 8 accelerators the same script shows the scaling.

Usage: python benchmarks/multi_device.py [--tasks 10] [--repeats 10]
"""

from __future__ import annotations

import os

# XLA_FLAGS must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import autoscale_jax as asj

try:  # run as a script from the repository root or as benchmarks.multi_device
    from mode_step_time import mlp_problem
except ImportError:
    from benchmarks.mode_step_time import mlp_problem


def layouts(num_devices: int) -> dict[str, Callable]:
    mesh = Mesh(np.array(jax.devices()[:num_devices]), ("d",))
    batch = NamedSharding(mesh, P("d"))
    replicated = NamedSharding(mesh, P())
    specs = {"layer1": P(None, "d"), "layer2": P("d", None), "heads": P("d", None)}

    def one_device(params, x, y):
        return jax.device_put((params, x, y), jax.devices()[0])

    def data_parallel(params, x, y):
        return jax.device_put(params, replicated), *jax.device_put((x, y), batch)

    def sharded_parameters(params, x, y):
        params = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in params.items()}
        return params, *jax.device_put((x, y), batch)

    return {
        "1 device": one_device,
        f"{num_devices} dev, data parallel": data_parallel,
        f"{num_devices} dev, sharded params": sharded_parameters,
    }


def steps(num_tasks: int) -> dict[str, Callable[[Any, Any, Any], Callable[[], Any]]]:
    """label -> (params, x, y) -> a zero-argument closure running one jitted step."""
    _, _, _, loss_fn, _ = mlp_problem(num_tasks)
    key = jax.random.PRNGKey(0)

    def ew(params, x, y):
        train = asj.linear_scalarization_step(loss_fn, jnp.ones(num_tasks), optax.adam(1e-3))
        step, state = jax.jit(train.step), train.init(params)
        return lambda: step(params, state, x, y)

    def autoscale(mode: str, phase: int, one_gradient: bool = False):
        def build(params, x, y):
            tx = asj.autoscale(num_tasks, 10**6 if phase == 1 else 1)
            train = asj.multitask_train_step(loss_fn, tx, optax.adam(1e-3), gradient_mode=mode)
            step = jax.jit(train.step)
            _, state, _ = step(params, train.init(params), x, y, key=key)
            if one_gradient:
                step = jax.jit(train.one_gradient_step)
            return lambda: step(params, state, x, y, key=key)

        return build

    return {
        "EW": ew,
        "phase 1, stacked": autoscale("stacked", 1),
        "phase 1, gramian": autoscale("gramian", 1),
        "phase 2, one_gradient_step": autoscale("stacked", 2, one_gradient=True),
    }


def weight_agreement(num_tasks: int, guide: str, layout: Callable) -> float:
    params, x, y, loss_fn, _ = mlp_problem(num_tasks)
    weights = []
    for place in (layouts(8)["1 device"], layout):
        p, xs, ys = place(params, x, y)
        train = asj.multitask_train_step(
            loss_fn, asj.autoscale(num_tasks, 6, window=2, guide=guide), optax.adam(1e-3)
        )
        step, state = jax.jit(train.step), train.init(p)
        for _ in range(6):
            p, state, _ = step(p, state, xs, ys)
        weights.append(np.asarray(asj.task_weights(state)))
    return float(np.max(np.abs(weights[1] / weights[0] - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    n = len(jax.devices())
    if n < 8:
        print(f"only {n} devices (XLA_FLAGS was set elsewhere?): need 8. Skipped.")
        return
    k = args.tasks
    print(f"{n} {jax.devices()[0].platform} devices; MLP 784-512-512, batch 256, K={k}")
    params, x, y, _, _ = mlp_problem(k)
    runs = {}
    for layout_name, place in layouts(8).items():
        placed = place(params, x, y)
        for step_name, build in steps(k).items():
            runs[(step_name, layout_name)] = build(*placed)
    for run in runs.values():
        jax.block_until_ready(run())
    samples: dict = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            samples[name].append(time.perf_counter() - start)
    ms = {name: statistics.median(v) * 1e3 for name, v in samples.items()}
    names = list(layouts(8))
    print("\n(d) step time, ms (ratio to 1 device)")
    print("| step | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for step_name in steps(k):
        one = ms[(step_name, names[0])]
        cells = [
            f"{ms[(step_name, name)]:.2f} ({ms[(step_name, name)] / one:.2f}x)" for name in names
        ]
        print(f"| {step_name} | " + " | ".join(cells) + " |")
    print("\nAutoScale weights after 6 steps: max relative difference to 1 device")
    print("| guide | " + " | ".join(names[1:]) + " |")
    print("|---|" + "---:|" * (len(names) - 1))
    for guide in ("gms", "cond", "loss"):
        cells = [f"{weight_agreement(k, guide, layouts(8)[name]):.1e}" for name in names[1:]]
        print(f"| {guide} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
