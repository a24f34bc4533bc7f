"""Benchmark models: per-kind losses, loss shapes, head isolation, masks, the graph net."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import autoscale_jax as asj
from autoscale_jax.bench.datasets import MultiTaskDataset, Split, TaskSpec
from autoscale_jax.bench.running import models

TASKS = (
    TaskSpec("digit", "classification", 4, ("accuracy",), (True,)),
    TaskSpec("flag", "binary", 1, ("accuracy",), (True,)),
    TaskSpec("value", "regression", 3, ("mae",), (False,)),
)


def synthetic_dataset(num_examples=32, num_features=6, seed=0):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(num_examples, num_features)).astype(np.float32)
    targets = (
        rng.integers(0, 4, num_examples).astype(np.int32),
        rng.integers(0, 2, num_examples).astype(np.float32),
        rng.normal(size=(num_examples, 3)).astype(np.float32),
    )
    split = Split(inputs, targets)
    return MultiTaskDataset("synthetic", TASKS, split, split, split, "test data")


@pytest.fixture(scope="module")
def mlp():
    data = synthetic_dataset()
    fm = models.functional_model(models.build_model(data, seed=0, trunk_sizes=(8, 5)))
    batch = (jnp.asarray(data.train.inputs), tuple(jnp.asarray(t) for t in data.train.targets))
    return data, fm, models.multitask_loss_fn(fm.apply, data.tasks), batch


def test_task_losses_match_hand_computed_values():
    classes = TASKS[0]
    # Uniform logits over 4 classes: CE = log 4 whatever the label.
    ce = models.task_loss(classes, jnp.zeros((3, 4)), jnp.array([0, 1, 3]))
    np.testing.assert_allclose(ce, np.log(4.0), rtol=1e-6)
    # One logit of 0: BCE = log 2 for either label; a confident right answer costs ~0.
    np.testing.assert_allclose(
        models.task_loss(TASKS[1], jnp.zeros((2, 1)), jnp.array([0.0, 1.0])), np.log(2.0), rtol=1e-6
    )
    confident = models.task_loss(TASKS[1], jnp.array([[20.0], [-20.0]]), jnp.array([1.0, 0.0]))
    assert float(confident) < 1e-6
    # MSE averages over every element: errors 1 and 3 on two of four entries -> 10 / 4.
    mse = models.task_loss(TASKS[2], jnp.array([[1.0, 0.0], [0.0, 3.0]]), jnp.zeros((2, 2)))
    np.testing.assert_allclose(mse, 2.5)
    with pytest.raises(ValueError, match="Unknown task kind"):
        models.task_loss(TASKS[0]._replace(kind="ranking"), jnp.zeros((1, 1)), jnp.zeros(1))


def test_loss_fn_returns_one_finite_loss_per_task(mlp):
    _, fm, loss_fn, batch = mlp
    outputs = fm.apply(fm.params, batch[0])
    assert [y.shape for y in outputs] == [(32, 4), (32, 1), (32, 3)]
    losses = jax.jit(loss_fn)(fm.params, batch)
    assert losses.shape == (3,)
    assert np.all(np.isfinite(losses))
    expected = [models.task_loss(s, y, t) for s, y, t in zip(TASKS, outputs, batch[1], strict=True)]
    np.testing.assert_allclose(losses, expected, rtol=1e-6)


@pytest.fixture(scope="module")
def task_grads(mlp):
    _, fm, loss_fn, batch = mlp
    return jax.jit(asj.task_value_and_grad(loss_fn))(fm.params, batch)[1]


def test_each_head_only_gets_its_own_tasks_gradient(task_grads):
    for head in range(3):
        for task in range(3):
            norm = sum(
                float(jnp.sum(g[task] ** 2)) for g in jax.tree.leaves(task_grads["heads"][head])
            )
            assert (norm > 0) == (task == head), (head, task, norm)
    for leaf in jax.tree.leaves(task_grads["trunk"]):
        assert np.all(np.abs(np.asarray(leaf)).reshape(3, -1).sum(axis=1) > 0)


def test_trunk_mask_is_the_automatic_shared_mask(mlp, task_grads):
    fm = mlp[1]
    assert models.trunk_mask(fm.params) == asj.shared_parameter_mask(task_grads)
    assert any(jax.tree.leaves(models.trunk_mask(fm.params)))


def test_last_shared_layer_mask_selects_only_the_last_trunk_layer(mlp):
    _, fm, _, _ = mlp
    mask = models.last_shared_layer_mask(fm.params)
    selected = [
        jax.tree_util.keystr(path)
        for path, keep in jax.tree_util.tree_flatten_with_path(mask)[0]
        if keep
    ]
    last = max(fm.params["trunk"]["layers"])
    assert sorted(selected) == [
        f"['trunk']['layers'][{last}]['bias']",
        f"['trunk']['layers'][{last}]['kernel']",
    ]


def test_predict_in_batches_matches_one_call_and_compiles_once(mlp):
    data, fm, _, _ = mlp
    predict = jax.jit(fm.apply)
    chunked = models.predict_in_batches(predict, fm.params, data.train.inputs, batch_size=10)
    direct = fm.apply(fm.params, jnp.asarray(data.train.inputs))
    for a, b in zip(chunked, direct, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert predict._cache_size() == 1  # the last slice was padded, not recompiled


def random_molecules(num_molecules=3, atoms=6, seed=0):
    rng = np.random.default_rng(seed)
    numbers = rng.choice([1, 6, 7, 8], size=(num_molecules, atoms)).astype(np.float32)
    numbers[:, -2:] = 0  # two padding slots
    positions = rng.normal(scale=1.5, size=(num_molecules, atoms, 3)).astype(np.float32)
    mask = (numbers > 0).astype(np.float32)
    positions *= mask[..., None]
    return np.concatenate([numbers[..., None], positions, mask[..., None]], axis=-1)


def test_graph_net_is_invariant_to_atom_order_rotation_and_padding():
    fm = models.functional_model(
        models.MultiTaskGraphNet((1, 2), width=8, num_interactions=2, rngs=nnx.Rngs(0))
    )
    apply = jax.jit(fm.apply)

    def net(inputs):
        return apply(fm.params, inputs)

    molecules = random_molecules()
    outputs = net(jnp.asarray(molecules))
    assert [y.shape for y in outputs] == [(3, 1), (3, 2)]
    order = np.array([3, 0, 2, 1, 4, 5])  # permute the real atoms only
    permuted = net(jnp.asarray(molecules[:, order]))
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0].astype(np.float32)
    rotated = molecules.copy()
    rotated[..., 1:4] = rotated[..., 1:4] @ rotation
    turned = net(jnp.asarray(rotated))
    moved_padding = molecules.copy()
    moved_padding[:, -2:, 1:4] = 50.0  # padding coordinates must not matter
    padded = net(jnp.asarray(moved_padding))
    for variant in (permuted, turned, padded):
        for a, b in zip(outputs, variant, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_build_model_rejects_unknown_input_shapes():
    data = synthetic_dataset()
    odd = data._replace(train=Split(np.zeros((4, 2, 2, 2), np.float32), data.train.targets))
    with pytest.raises(ValueError, match="No default model"):
        models.build_model(odd, seed=0)


def test_sigmoid_reconstruction_head_squashes_only_the_reconstruction_output():
    from autoscale_jax.bench import datasets

    data = datasets.multi_mnist(num_train=64, num_validation=16, num_test=16, image_size=14)
    linear = models.functional_model(models.build_model(data, seed=3, trunk_sizes=(16,)))
    sigmoid = models.functional_model(
        models.build_model(data, seed=3, trunk_sizes=(16,), reconstruction_head="sigmoid")
    )
    inputs = jnp.asarray(data.train.inputs[:8])
    logits, image = linear.apply(linear.params, inputs)
    squashed_logits, squashed_image = sigmoid.apply(linear.params, inputs)
    np.testing.assert_allclose(squashed_logits, logits, rtol=1e-6)
    np.testing.assert_allclose(squashed_image, jax.nn.sigmoid(image), rtol=1e-5)
    assert float(jnp.min(squashed_image)) > 0 and float(jnp.max(squashed_image)) < 1
    with pytest.raises(ValueError, match="reconstruction_head"):
        models.build_model(data, seed=0, reconstruction_head="tanh")
    with pytest.raises(ValueError, match="head_activations"):
        models.MultiTaskMLP(4, (2, 3), head_activations=("relu", None), rngs=nnx.Rngs(0))
