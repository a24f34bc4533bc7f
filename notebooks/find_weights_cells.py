"""The cells of ``find_weights.ipynb`` (written by ``make_notebooks.py``): the one-call search
on a small three-task benchmark, then the survivor trained on with its fixed weights."""

FIND_WEIGHTS = [
    (
        "code",
        """# Budget: the defaults run in about a minute on a CPU.
STEPS = 600""",
    ),
    (
        "code",
        """import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import autoscale_jax as asj

# A small benchmark: three regression targets of a shared tanh trunk, whose scales differ by
# 100x (so equal weights neglect the small one), with train / validation / test splits.
K, SCALES = 3, jnp.array([1.0, 10.0, 0.1])
keys = jax.random.split(jax.random.PRNGKey(0), 5)
teacher = jax.random.normal(keys[0], (16, K))


def split(key, n):
    x = jax.random.normal(key, (n, 16))
    return x, jnp.tanh(x @ teacher) * SCALES + 0.02 * SCALES * jax.random.normal(key, (n, K))


train, validation, test = split(keys[1], 4096), split(keys[2], 1024), split(keys[3], 1024)
params = {
    "trunk": jax.random.normal(keys[4], (16, 64)) / 4.0,
    "heads": jnp.zeros((64, K)),
}


def loss_fn(p, batch):  # -> [K] task losses
    x, y = batch
    return jnp.mean((jnp.tanh(x @ p["trunk"]) @ p["heads"] - y) ** 2, axis=0)


def relative_error(p, data):  # the evaluation: each task's MSE relative to its variance
    return loss_fn(p, data) / jnp.var(data[1], axis=0)


def score_fn(p):  # validation score, higher is better (traced: pure JAX)
    return -jnp.mean(jnp.log(relative_error(p, validation)))


def batch_of_step(step, size=64):  # one batch per step, from the step number
    idx = (step * size + jnp.arange(size)) % train[0].shape[0]
    return train[0][idx], train[1][idx]""",
    ),
    (
        "markdown",
        "One call: AutoScale's phase 1 (the `gms` guide, 5% of the budget), a fresh optimizer "
        "state at the switch, candidates `w(α) ∝ w_gms^α` pruned by successive halving on the "
        "validation score, then (K = 3) ×4 moves of each task around the survivor. Batches are "
        "streamed in chunks of 16 steps; the call returns the survivor's weights, parameters, "
        "optimizer state and a report.",
    ),
    (
        "code",
        """optimizer = optax.adam(3e-3)
start = time.perf_counter()
found = asj.search.find_weights(loss_fn, optimizer, score_fn, params, batch_of_step, budget=STEPS)
report = found.report
print(f"search: {report.steps} of {STEPS} steps in {time.perf_counter() - start:.1f} s "
      f"(compilation included), {report.gradient_evaluations} gradient evaluations")
print("AutoScale's phase-1 weights:", np.round(report.phase_one_weights, 3))
for number, stage in enumerate(report.stages):
    print(f"stage {number + 1} ({stage.kind}), scores per rung (NaN: pruned):")
    for row, scores in zip(stage.candidates, stage.rung_scores.T, strict=True):
        print("   ", np.round(row, 3), np.round(scores, 3))
    print("  survivor:", stage.survivor, np.round(stage.weights, 3))
print(f"whole run with the survivor trained to {STEPS} steps: "
      f"{report.relative_cost:.2f}x the gradient evaluations of one equal-weight run")""",
    ),
    (
        "markdown",
        "The weights are all the search hands over: train on with `Σ_k w_k L_k` in any loop "
        "(here a plain optax loop, no library code). For comparison, equal weights and "
        "AutoScale's phase-1 weights train the whole budget the same way.",
    ),
    (
        "code",
        """def train_fixed(weights, p, opt_state, first_step):
    grad = jax.jit(jax.grad(lambda p, b: weights @ loss_fn(p, b)))
    for step in range(first_step, STEPS):
        updates, opt_state = optimizer.update(grad(p, batch_of_step(step)), opt_state, p)
        p = optax.apply_updates(p, updates)
    return p


results = {
    "equal weights": train_fixed(jnp.ones(K), params, optimizer.init(params), 0),
    "AutoScale weights from step 0": train_fixed(
        jnp.asarray(report.phase_one_weights), params, optimizer.init(params), 0
    ),
    "search (survivor trained on)": train_fixed(
        found.weights, found.params, found.opt_state, report.steps
    ),
}
print(f"{'':32s} test relative error per task     mean log")
for label, p in results.items():
    errors = np.asarray(relative_error(p, test))
    print(f"{label:32s} {np.round(errors, 4)}  {np.mean(np.log(errors)):.3f}")""",
    ),
    (
        "code",
        """scores = {
    label: -float(jnp.mean(jnp.log(relative_error(p, test)))) for label, p in results.items()
}
assert report.steps < STEPS and found.weights.shape == (K,)
assert scores["search (survivor trained on)"] > scores["equal weights"], scores""",
    ),
]
