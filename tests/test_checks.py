"""Input validation of the multi-task transformations (hand-made bad inputs; every method's
refusals are in test_bad_inputs.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autoscale_jax import checks


def test_check_num_tasks():
    assert checks.check_num_tasks(np.int64(3)) == 3
    with pytest.raises(TypeError, match="static Python int"):
        checks.check_num_tasks(2.0)
    with pytest.raises(TypeError, match="static_args"):
        jax.jit(checks.check_num_tasks)(3)
    with pytest.raises(ValueError, match="at least 2"):
        checks.check_num_tasks(1)


def test_check_task_losses():
    assert checks.check_task_losses(None, 2, required=False) is None
    np.testing.assert_allclose(checks.check_task_losses([1.0, 2.0], 2), [1.0, 2.0])
    with pytest.raises(ValueError, match="needs the task losses"):
        checks.check_task_losses(None, 2)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        checks.check_task_losses(jnp.ones((2, 1)), 2)
