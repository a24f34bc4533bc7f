"""The LS weight grid."""

import numpy as np

from autoscale_jax.bench.grid import ls_weight_grid, weights_label


def test_ls_weight_grid():
    pair = ls_weight_grid(2, 5, max_ratio=100.0)
    np.testing.assert_allclose(pair.sum(axis=1), 2.0)
    np.testing.assert_allclose(pair[2], [1.0, 1.0])  # odd sizes include equal weights
    np.testing.assert_allclose(pair[::-1], pair[:, ::-1])  # symmetric in the two tasks
    np.testing.assert_allclose(pair[-1, 1] / pair[-1, 0], 100.0)
    many = ls_weight_grid(4, 6, seed=3)
    assert many.shape == (6, 4) and np.all(many > 0)
    np.testing.assert_allclose(many.sum(axis=1), 4.0)
    np.testing.assert_allclose(many[0], 1.0)


def test_weights_label_tells_grid_points_apart():
    labels = [weights_label(w) for w in ls_weight_grid(2, 9)]
    assert len(set(labels)) == 9 and labels[4] == "ls[1,1]"
