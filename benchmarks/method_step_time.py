"""Per-step cost of every registered multi-task method relative to equal weights.

For K = 2, 3, 10 tasks on one MLP (shared trunk, one head per task), each method's jitted
``multitask_train_step`` (with its fast path where it has one) is timed, interleaved with equal
weights in the same run, and the median ratio is printed as a markdown table. Methods with
extra inputs (a second batch's task gradients, a validation gradient) get them precomputed:
the table shows the step's own cost, and their extra backward passes come on top.

Usage: python benchmarks/method_step_time.py [--tasks 2 3 10] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import optax

import autoscale_jax as asj

try:  # run as a script from the repository root or as benchmarks.method_step_time
    from step_time import make_problem
except ImportError:
    from benchmarks.step_time import make_problem


def method_configs(num_tasks: int) -> dict[str, asj.MultiTaskTransformation]:
    """Every registered method with its defaults; AutoScale in both phases; wrappers around
    Nash-MTL (``freeze`` in its phase 2)."""
    configs: dict[str, asj.MultiTaskTransformation] = {}
    for name in asj.methods.available():
        info = asj.methods.info(name)
        if info.constructor == "weights" or info.min_tasks > num_tasks:
            continue  # fixed_weights is equal_weights' step; robust aggregators need K >= 3
        if name == "autoscale":
            configs["autoscale phase 1"] = asj.autoscale(num_tasks, 1000, metric_mask="shared")
            configs["autoscale phase 2, step (lax.cond)"] = asj.autoscale(num_tasks, 1)
        elif name == "freeze":
            inner = asj.methods.get("nash_mtl", num_tasks=num_tasks)
            configs["freeze(nash_mtl) phase 2"] = asj.methods.freeze(inner, estimation_steps=1)
        elif info.constructor == "method":
            inner = asj.methods.get("nash_mtl", num_tasks=num_tasks)
            configs[f"{name}(nash_mtl)"] = asj.methods.get(name, method=inner)
        else:
            configs[name] = asj.methods.get(name, num_tasks=num_tasks)
    return configs


def extra_inputs(tx_label: str, loss_fn: Callable, params: Any, x: Any, y: Any) -> dict:
    """The documented extra update inputs, computed once outside the timed step.

    Why outside: they come from a second batch, which a training loop computes with the
    same cost as the first (timed separately as the per-task-gradient step itself).
    """
    name = tx_label.split("(")[0].split(" ")[0]
    wanted = asj.methods.info(name).extra_inputs if name in asj.methods.available() else ()
    inputs: dict[str, Any] = {}
    if "second_task_grads" in wanted:
        _, inputs["second_task_grads"] = asj.task_value_and_grad(loss_fn)(params, x[::-1], y[::-1])
    if "validation_grads" in wanted:
        inputs["validation_grads"] = jax.grad(lambda p: loss_fn(p, x[::-1], y[::-1]).sum())(params)
    return inputs


def compiled_step(
    loss_fn: Callable,
    tx: Any,
    params: Any,
    x: Any,
    y: Any,
    one_gradient: bool = False,
    inputs: dict | None = None,
) -> Callable[[], Any]:
    """A zero-argument closure running one jitted step (after one warm-up step).

    ``one_gradient`` times ``TrainStep.one_gradient_step`` (no phase ``lax.cond``) instead;
    ``inputs`` are the method's extra update inputs.
    """
    inputs = inputs or {}
    trainer = asj.multitask_train_step(loss_fn, tx, optax.adam(1e-3))
    step = jax.jit(trainer.step)
    key = jax.random.PRNGKey(0)
    _, state, _ = step(params, trainer.init(params), x, y, key=key, **inputs)
    if one_gradient:
        step = jax.jit(trainer.one_gradient_step)
        jax.block_until_ready(step(params, state, x, y, key=key, **inputs))  # compile now
    return lambda: step(params, state, x, y, key=key, **inputs)


def time_ratios(num_tasks: int, repeats: int) -> dict[str, float]:
    loss_fn, params, x, y = make_problem(num_tasks, batch=256, dim=64, hidden=256)
    steps = {
        label: compiled_step(
            loss_fn, tx, params, x, y, inputs=extra_inputs(label, loss_fn, params, x, y)
        )
        for label, tx in method_configs(num_tasks).items()
    }
    steps["autoscale phase 2, one_gradient_step"] = compiled_step(
        loss_fn, asj.autoscale(num_tasks, 1), params, x, y, one_gradient=True
    )
    samples: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeats):
        for label, run in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            samples[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(values) for label, values in samples.items()}
    base = medians["equal_weights"]
    return {label: value / base for label, value in medians.items()} | {"_ms": base * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 3, 10])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    columns = {k: time_ratios(k, args.repeats) for k in args.tasks}
    labels = sorted({label for col in columns.values() for label in col} - {"_ms"})
    print(f"device={jax.devices()[0].platform}; step time / equal-weights step time (median)")
    print("| method | " + " | ".join(f"K={k}" for k in args.tasks) + " |")
    print("|---|" + "---:|" * len(args.tasks))
    ew = " | ".join(f"{columns[k]['_ms']:.2f} ms" for k in args.tasks)
    print(f"| equal_weights (absolute) | {ew} |")
    for label in labels:
        cells = " | ".join(f"{columns[k].get(label, float('nan')):.2f}" for k in args.tasks)
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    main()
