"""Side by side with TorchJD: the same MLP and methods, step times in each framework.

The model is the one of ``mode_step_time.py`` (784-512-512, batch 256, one linear regression
head per task), trained with Adam. For each method and K, prints our jitted step (stacked
per-task gradients on every parameter) and TorchJD's ``autojac.backward`` + ``jac_to_grad``
step, each relative to its own framework's equal-weights step (one backward pass of the summed
loss), and our step time over TorchJD's. Medians over interleaved repeats.

Needs the optional extra ``compare`` (``pip install 'autoscale-jax[compare]'``: torch, a CPU
wheel is enough, and torchjd); without them it prints a notice and exits cleanly.

Usage: python benchmarks/torchjd_compare.py [--tasks 2 10] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import autoscale_jax as asj

try:
    import torch
    from torchjd import aggregation
    from torchjd.autojac import backward, jac_to_grad
except ImportError:  # the optional extra is not installed
    torch = None

METHODS = ("upgrad", "mgda", "pcgrad", "cagrad", "nash_mtl", "imtl_g", "aligned_mtl")
TORCHJD = {
    "upgrad": lambda k: aggregation.UPGrad(),
    "mgda": lambda k: aggregation.MGDA(),
    "pcgrad": lambda k: aggregation.PCGrad(),
    "cagrad": lambda k: aggregation.CAGrad(c=0.5),
    "nash_mtl": lambda k: aggregation.NashMTL(n_tasks=k),
    "imtl_g": lambda k: aggregation.IMTLG(),
    "aligned_mtl": lambda k: aggregation.AlignedMTL(),
}


def jax_steps(num_tasks: int, batch: int) -> dict[str, Callable[[], Any]]:
    """Our EW step and every method's step, jitted, after one warm-up step."""
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {
        "layer1": jax.random.normal(keys[0], (784, 512)) / 28.0,
        "layer2": jax.random.normal(keys[1], (512, 512)) / 22.6,
        "heads": jax.random.normal(keys[2], (512, num_tasks)) / 22.6,
    }
    x = jax.random.normal(keys[3], (batch, 784))
    y = jax.random.normal(keys[4], (batch, num_tasks))

    def loss_fn(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        h = jax.nn.relu(jax.nn.relu(x @ p["layer1"]) @ p["layer2"])
        return jnp.mean((h @ p["heads"] - y) ** 2, axis=0)

    ew = asj.linear_scalarization_step(loss_fn, jnp.ones(num_tasks), optax.adam(1e-3))
    ew_step, ew_state = jax.jit(ew.step), ew.init(params)
    steps = {"EW": lambda: ew_step(params, ew_state, x, y)}
    key = jax.random.PRNGKey(0)
    for name in METHODS:
        trainer = asj.multitask_train_step(
            loss_fn, asj.methods.get(name, num_tasks=num_tasks), optax.adam(1e-3)
        )
        step = jax.jit(trainer.step)
        _, state, _ = step(params, trainer.init(params), x, y, key=key)
        steps[name] = lambda step=step, state=state: step(params, state, x, y, key=key)
    return steps


def torch_steps(num_tasks: int, batch: int) -> dict[str, Callable[[], Any]]:
    """Torch's EW step and TorchJD's step for every method it has."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512, bias=False),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512, bias=False),
        torch.nn.ReLU(),
        torch.nn.Linear(512, num_tasks, bias=False),
    )
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    x, y = torch.randn(batch, 784), torch.randn(batch, num_tasks)

    def losses() -> torch.Tensor:
        return ((model(x) - y) ** 2).mean(dim=0)

    def ew() -> None:
        optimizer.zero_grad()
        losses().sum().backward()
        optimizer.step()

    steps = {"EW": ew}
    for name in METHODS:
        try:
            aggregator = TORCHJD[name](num_tasks)
        except Exception as err:  # e.g. an optional solver dependency of TorchJD is missing
            print(f"  TorchJD {name}: unavailable ({type(err).__name__}: {err})")
            continue

        def step(aggregator: Any = aggregator) -> None:
            optimizer.zero_grad()
            backward(list(losses()), inputs=params)
            jac_to_grad(params, aggregator)
            optimizer.step()

        try:
            step()
        except Exception as err:
            print(f"  TorchJD {name}: failed ({type(err).__name__}: {err})")
            continue
        steps[name] = step
    return steps


def medians(runs: dict[str, Callable[[], Any]], repeats: int, sync: Callable) -> dict:
    for run in runs.values():
        sync(run())
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            sync(run())
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if torch is None:
        print("torch / torchjd not installed: pip install 'autoscale-jax[compare]'. Skipped.")
        return
    from importlib.metadata import version

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), torchjd {version('torchjd')}"
    )
    header = ("method", "K", "ours ms", "ours / our EW", "TorchJD ms", "TorchJD / torch EW")
    print("| " + " | ".join(header) + " | ours / TorchJD |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    # Torch first, then JAX: XLA:CPU's worker threads keep spinning for a while after a JAX
    # step and would slow the interleaved torch steps several-fold on a few cores.
    theirs_by_k = {
        k: medians(torch_steps(k, args.batch), args.repeats, lambda _: None) for k in args.tasks
    }
    for k in args.tasks:
        ours = medians(jax_steps(k, args.batch), args.repeats, jax.block_until_ready)
        theirs = theirs_by_k[k]
        for name in ("EW", *METHODS):
            o, t = ours.get(name, float("nan")), theirs.get(name, float("nan"))
            print(
                f"| {name} | {k} | {o * 1e3:.2f} | {o / ours['EW']:.2f} | {t * 1e3:.2f} | "
                f"{t / theirs['EW']:.2f} | {o / t:.2f} |"
            )


if __name__ == "__main__":
    main()
