"""Scale benchmark: AutoScale's phase 1 in every gradient mode against equal weights (EW).

Prints three markdown tables on one MLP (784-512-512, batch 256, one linear regression head per
task), every step jitted and timed interleaved with EW in the same run (each ratio is the
median over rounds of a step's time / the EW step's time in the same round; each round runs
the steps in a new random order, each in a short burst whose first call is not timed):

  (a) step time / EW step time for K = 2, 4, 10, 40, 64: phase 1 in every gradient mode
      (stacked, gramian, representation, last_layer, sampled), MGDA's stacked step, and phase 2
      (``step`` with its ``lax.cond``, and ``one_gradient_step``);
  (b) the compiled steps' memory from ``compiled.memory_analysis()``: temporaries (the working
      memory on top of parameters, state and batch) and the peak (arguments + outputs +
      temporaries - aliases);
  (c) whole-run cost x EW at K = 10 with a 5% phase 1: measured end to end (phase 1 with
      ``step``, then ``one_gradient_step``; parameters and state donated, as in a training
      loop), and predicted from the step times of (a);
  (d) phase 2 with donated parameters and state: ``one_gradient_step`` / EW step, both jitted
      with ``donate_argnums=(0, 1)`` and fed their own outputs (AutoScale's window statistics
      and metrics then pass through without copies);
  (a') with ``--weights-steps N``: the guides' weights from each mode's window-mean Gramian
      (last 10 of N equal-weight steps, one trajectory) against the exact stacked ones.

Runs unchanged on CPU or GPU. Usage:
  python benchmarks/mode_step_time.py [--tasks 2 4 10 40 64] [--repeats 5] [--run-steps 400]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import autoscale_jax as asj

MODES = ("stacked", "gramian", "representation", "last_layer", "sampled")
DONATED = (0, 1)  # parameters and optimizer state, as a training loop would


def mlp_problem(num_tasks: int, batch: int = 256, dims: tuple = (784, 512, 512)) -> tuple:
    """Params, data and two :class:`SplitLoss` views of one loss: split at the trunk's output
    (``representation``) and before its last layer (``last_layer``)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    d_in, h1, h2 = dims
    params = {
        "layer1": jax.random.normal(keys[0], (d_in, h1)) / jnp.sqrt(d_in),
        "layer2": jax.random.normal(keys[1], (h1, h2)) / jnp.sqrt(h1),
        "heads": jax.random.normal(keys[2], (h2, num_tasks)) / jnp.sqrt(h2),
    }
    x = jax.random.normal(keys[3], (batch, d_in))
    y = jax.random.normal(keys[4], (batch, num_tasks)) * 10.0 ** jnp.linspace(-1, 1, num_tasks)

    def first(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        return jax.nn.relu(x @ p["layer1"])

    def second(p: dict, h: jax.Array) -> jax.Array:
        return jax.nn.relu(h @ p["layer2"])

    def heads(p: dict, z: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((z @ p["heads"] - y) ** 2, axis=0)

    at_output = asj.SplitLoss(lambda p, x, y: second(p, first(p, x, y)), heads)
    before_last = asj.SplitLoss(first, lambda p, h, x, y: heads(p, second(p, h), x, y))
    return params, x, y, at_output, before_last


def num_sampled(num_tasks: int) -> int:
    return min(num_tasks, 8)


def steps_for(num_tasks: int) -> dict[str, tuple[Any, Callable, dict]]:
    """label -> (loss_fn, weighting, multitask_train_step keywords)."""
    *_, at_output, before_last = mlp_problem(num_tasks)
    last_layer = {"layer1": False, "layer2": True, "heads": False}
    configs = {}
    for mode in MODES:
        loss_fn = before_last if mode == "last_layer" else at_output
        mask = last_layer if mode == "last_layer" else None
        kwargs: dict = {"gradient_mode": mode}
        if mode == "sampled":
            kwargs["num_sampled_tasks"] = num_sampled(num_tasks)
        configs[f"phase 1, {mode}"] = (
            loss_fn,
            asj.autoscale(num_tasks, 10**6, metric_mask=mask),
            kwargs,
        )
    configs["MGDA, stacked"] = (at_output, asj.methods.mgda(num_tasks), {})
    configs["phase 2, step"] = (at_output, asj.autoscale(num_tasks, 1), {})
    configs["phase 2, step (gramian mode)"] = (
        at_output,
        asj.autoscale(num_tasks, 1),
        {"gradient_mode": "gramian"},
    )
    return configs


def compiled_steps(num_tasks: int) -> tuple[dict[str, Callable[[], Any]], dict[str, float]]:
    """Zero-argument closures running each jitted step, and their temporary memory (MiB)."""
    params, x, y, at_output, _ = mlp_problem(num_tasks)
    key = jax.random.PRNGKey(0)
    optimizer = optax.adam(1e-3)
    ew = asj.linear_scalarization_step(at_output, jnp.ones(num_tasks), optimizer)
    ew_step, ew_state = jax.jit(ew.step), ew.init(params)
    runs = {"EW (plain optax)": lambda: ew_step(params, ew_state, x, y)}
    memory = {"EW (plain optax)": _temp_mib(ew_step, params, ew_state, x, y)}
    for label, (loss_fn, tx, kwargs) in steps_for(num_tasks).items():
        trainer = asj.multitask_train_step(loss_fn, tx, optimizer, **kwargs)
        step = jax.jit(trainer.step)
        _, state, _ = step(params, trainer.init(params), x, y, key=key)  # phase 2 if T1 = 1
        runs[label] = bind(step, params, state, x, y, key=key)
        memory[label] = _temp_mib(step, params, state, x, y, key=key)
        if label == "phase 2, step":
            fast = jax.jit(trainer.one_gradient_step)
            runs["phase 2, one_gradient_step"] = bind(fast, params, state, x, y, key=key)
            memory["phase 2, one_gradient_step"] = _temp_mib(fast, params, state, x, y, key=key)
    return runs, memory


def bind(fn: Callable, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


def _temp_mib(jitted: Callable, *args: Any, **kwargs: Any) -> tuple[float, float]:
    """(temporary, peak) MiB of the compiled step; peak = arguments + outputs + temporaries
    - aliased buffers (parameters, optimizer state and batch included)."""
    m = jitted.lower(*args, **kwargs).compile().memory_analysis()
    if m is None:
        return float("nan"), float("nan")
    peak = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    return m.temp_size_in_bytes / 2**20, (peak - m.alias_size_in_bytes) / 2**20


def interleaved_samples(
    runs: dict[str, Callable[[], Any]], repeats: int, burst: int = 3
) -> dict[str, list]:
    """Seconds per call over ``repeats`` rounds, so that drifts in machine load hit every
    candidate of a round alike. Each round runs the candidates in a new random order, each in a
    burst of ``burst`` calls: the first warms the caches after the previous candidate (a
    training loop calls one step over and over), the mean of the others is the sample."""
    for run in runs.values():
        jax.block_until_ready(run())
    samples: dict[str, list[float]] = {name: [] for name in runs}
    order, shuffle = list(runs), random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name in order:
            jax.block_until_ready(runs[name]())
            start = time.perf_counter()
            for _ in range(burst - 1):
                jax.block_until_ready(runs[name]())
            samples[name].append((time.perf_counter() - start) / (burst - 1))
    return samples


def paired_ratios(samples: dict[str, list], reference: str) -> dict[str, float]:
    """Median over rounds of each candidate's time / the reference's time in the same round."""
    base = samples[reference]
    return {
        name: statistics.median(t / b for t, b in zip(times, base, strict=True))
        for name, times in samples.items()
    }


def whole_run(num_tasks: int, total_steps: int, phase_share: float, mode: str) -> Callable:
    """A compiled run: ``phase_share`` of the steps in phase 1 (``step``), then
    ``one_gradient_step``; calling it returns its wall time in seconds."""
    params, x, y, at_output, before_last = mlp_problem(num_tasks)
    estimation = max(1, round(phase_share * total_steps))
    loss_fn = before_last if mode == "last_layer" else at_output
    mask = {"layer1": False, "layer2": True, "heads": False} if mode == "last_layer" else None
    kwargs: dict = {"gradient_mode": mode}
    if mode == "sampled":
        kwargs["num_sampled_tasks"] = num_sampled(num_tasks)
    tx = asj.autoscale(num_tasks, estimation, metric_mask=mask)
    trainer = asj.multitask_train_step(loss_fn, tx, optax.adam(1e-3), **kwargs)
    step = jax.jit(trainer.step, donate_argnums=DONATED)
    fast = jax.jit(trainer.one_gradient_step, donate_argnums=DONATED)
    state, key = trainer.init(params), jax.random.PRNGKey(0)
    # Compile both before timing (fast on a phase-1 state only compiles: its output is NaN).
    jax.block_until_ready(fast(*_copies(params, state), x, y, key=key))
    jax.block_until_ready(step(*_copies(params, state), x, y, key=key))

    def run() -> float:
        p, s = _copies(params, state)
        start = time.perf_counter()
        for i in range(total_steps):
            p, s, _ = (step if i < estimation else fast)(p, s, x, y, key=key)
        jax.block_until_ready(p)
        return time.perf_counter() - start

    return run


def ew_run(num_tasks: int, total_steps: int) -> Callable:
    """The compiled equal-weights run; calling it returns its wall time in seconds."""
    params, x, y, at_output, _ = mlp_problem(num_tasks)
    ew = asj.linear_scalarization_step(at_output, jnp.ones(num_tasks), optax.adam(1e-3))
    step, state = jax.jit(ew.step, donate_argnums=DONATED), ew.init(params)
    jax.block_until_ready(step(*_copies(params, state), x, y))

    def run() -> float:
        p, s = _copies(params, state)
        start = time.perf_counter()
        for _ in range(total_steps):
            p, s, _ = step(p, s, x, y)
        jax.block_until_ready(p)
        return time.perf_counter() - start

    return run


def _copies(*trees: Any) -> tuple:
    """Fresh buffers for a donating step (donation invalidates its inputs)."""
    return tuple(jax.tree.map(jnp.copy, tree) for tree in trees)


def donated_phase_two(num_tasks: int, repeats: int) -> float:
    """Median over rounds of ``one_gradient_step`` / EW step, both donating and fed their own
    outputs."""
    params, x, y, at_output, _ = mlp_problem(num_tasks)
    key, optimizer = jax.random.PRNGKey(0), optax.adam(1e-3)
    ew = asj.linear_scalarization_step(at_output, jnp.ones(num_tasks), optimizer)
    trainer = asj.multitask_train_step(at_output, asj.autoscale(num_tasks, 1), optimizer)
    phase_two = jax.jit(trainer.step)(params, trainer.init(params), x, y, key=key)[1]
    steps = {
        "ew": (jax.jit(ew.step, donate_argnums=DONATED), ew.init(params), {}),
        "fast": (
            jax.jit(trainer.one_gradient_step, donate_argnums=DONATED),
            phase_two,
            {"key": key},
        ),
    }
    live = {name: _copies(params, state) for name, (_, state, _) in steps.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(repeats + 3):  # 3 warm-up rounds (compilation included)
        for name, (fn, _, kwargs) in steps.items():
            start = time.perf_counter()
            p, s, _ = fn(*live[name], x, y, **kwargs)
            jax.block_until_ready(p)
            live[name] = (p, s)
            if repeat >= 3:
                samples[name].append(time.perf_counter() - start)
    return paired_ratios(samples, "ew")["fast"]


def mode_weights(num_tasks: int, steps: int, guide: str) -> dict[str, Any]:
    """The guide's weights from each mode's window-mean Gramian on one shared trajectory.

    The parameters follow ``steps`` equal-weight Adam steps; every mode measures the Gramians
    of the last window (10 steps) at the same parameters, so the comparison shows each mode's
    approximation alone, not a diverged training run (Adam turns round-off into different
    trajectories within a few dozen steps).
    """
    params, x, y, at_output, before_last = mlp_problem(num_tasks)
    ew = asj.linear_scalarization_step(at_output, jnp.ones(num_tasks), optax.adam(1e-3))
    step, state, trajectory = jax.jit(ew.step), ew.init(params), []
    for _ in range(steps):
        params, state, _ = step(params, state, x, y)
        trajectory.append(params)
    rule = asj.weighting.guide_rule(guide)
    weights = {}
    for mode in MODES:
        loss_fn = before_last if mode == "last_layer" else at_output
        mask = {"layer1": False, "layer2": True, "heads": False} if mode == "last_layer" else None
        measure = jax.jit(
            asj.task_gramian(
                loss_fn,
                mode=mode,
                metric_mask=mask,
                num_sampled_tasks=num_sampled(num_tasks) if mode == "sampled" else None,
            )
        )
        stats = asj.estimator.init_window_statistics(num_tasks)
        for i, p in enumerate(trajectory[-10:]):
            losses, observed = measure(p, x, y, key=jax.random.PRNGKey(i))
            everything = jnp.ones((num_tasks,), bool)
            stats = asj.estimator.accumulate(
                stats, observed.gramian, losses, observed.task_mask, everything
            )
        weights[mode] = rule(*asj.estimator.window_means(stats))
    return weights


def table(title: str, columns: dict[int, dict[str, float]], fmt: str, ew_row: str) -> None:
    tasks = list(columns)
    print(f"\n{title}")
    print("| step | " + " | ".join(f"K={k}" for k in tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    labels = list(next(iter(columns.values())))
    for label in labels:
        cells = " | ".join(format(columns[k].get(label, float("nan")), fmt) for k in tasks)
        name = ew_row if label == "EW (plain optax)" else label
        print(f"| {name} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 10, 40, 64])
    parser.add_argument("--repeats", type=int, default=5, help="0 skips (a) and (b)")
    parser.add_argument("--run-steps", type=int, default=400, help="(c): 0 skips the run")
    parser.add_argument("--run-tasks", type=int, default=10)
    parser.add_argument("--run-repeats", type=int, default=3)
    parser.add_argument("--weights-steps", type=int, default=0, help="(a'): 0 skips it")
    parser.add_argument("--donated-repeats", type=int, default=60, help="(d): 0 skips it")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"device={device.platform} ({device.device_kind}); MLP 784-512-512, batch 256")
    ratios, memory, step_ratios = {}, {}, {}
    for k in args.tasks if args.repeats else ():
        runs, memory[k] = compiled_steps(k)
        samples = interleaved_samples(runs, args.repeats)
        step_ratios[k] = paired_ratios(samples, "EW (plain optax)")
        ew_ms = statistics.median(samples["EW (plain optax)"]) * 1e3
        ratios[k] = {**step_ratios[k], "EW (plain optax)": ew_ms}
        print(f"  K={k} done (sampled mode: m={num_sampled(k)})", flush=True)
    if args.repeats:
        table("(a) step time / EW step time (EW row: ms)", ratios, ".2f", "EW (plain optax), ms")
        temp = {k: {label: v[0] for label, v in col.items()} for k, col in memory.items()}
        peak = {k: {label: v[1] for label, v in col.items()} for k, col in memory.items()}
        table("(b1) compiled temporary memory, MiB", temp, ".2f", "EW (plain optax)")
        table("(b2) compiled peak memory (args + outputs + temporaries), MiB", peak, ".1f", "EW")
    if args.weights_steps:
        k = args.run_tasks
        print(
            f"\n(a') guide weights of each mode's window-mean Gramian (steps "
            f"{args.weights_steps - 10}-{args.weights_steps - 1} of one EW run), K={k}: "
            "max |w / w_stacked - 1|"
        )
        print("| guide | " + " | ".join(MODES[1:]) + " |")
        print("|---|" + "---:|" * (len(MODES) - 1))
        for guide in ("gms", "cond", "loss"):
            w = mode_weights(k, args.weights_steps, guide)
            cells = [f"{float(jnp.max(jnp.abs(w[m] / w['stacked'] - 1))):.1e}" for m in MODES[1:]]
            print(f"| {guide} | " + " | ".join(cells) + " |")
    if args.run_steps and args.run_tasks in step_ratios:
        k, n, share = args.run_tasks, args.run_steps, 0.05
        times = step_ratios[k]
        print(f"\n(c) whole AutoScale run x EW, K={k}, {n} steps, phase 1 = {share:.0%}")
        print("| phase-1 mode | measured run / EW run (median) | predicted from (a) |")
        print("|---|---:|---:|")
        ew = ew_run(k, n)
        runs = {mode: whole_run(k, n, share, mode) for mode in MODES}
        ratios_c: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.run_repeats):  # interleaved with EW: load drifts hit both alike
            for mode, run in runs.items():
                ratios_c[mode].append(run() / ew())
        for mode in MODES:
            measured = statistics.median(ratios_c[mode])
            predicted = (
                share * times[f"phase 1, {mode}"]
                + (1 - share) * times["phase 2, one_gradient_step"]
            )
            print(f"| {mode} | {measured:.3f} | {predicted:.3f} |")
    if args.donated_repeats:
        print("\n(d) phase 2, parameters and state donated: one_gradient_step / EW step (median)")
        print("| K | ratio |")
        print("|---:|---:|")
        for k in args.tasks:
            print(f"| {k} | {donated_phase_two(k, args.donated_repeats):.3f} |", flush=True)


if __name__ == "__main__":
    main()
