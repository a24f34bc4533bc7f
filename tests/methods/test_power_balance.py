"""The power-balance solver of Nash-MTL and FairGrad: ``(G w)_k = w_k^{-p}``, ``w > 0``."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_jacobian
from method_checks import gramian32

from autoscale_jax.methods import _power_balance

power_balance = jax.jit(_power_balance.power_balance, static_argnums=1)


def test_power_balance_budget_is_fixed_and_reported(rng):
    J = random_jacobian(rng, 5, 7)
    solve = functools.partial(_power_balance.power_balance, max_iterations=1)
    newton = jax.jit(solve)(gramian32(J))
    assert int(newton.iterations) == 1 and not bool(newton.converged)
    assert np.all(np.isfinite(newton.solution)) and np.all(np.asarray(newton.solution) > 0)


@pytest.mark.parametrize("power", [1.0, 0.5, 2.0])
def test_power_balance_solves_its_equation(rng, power):
    J = random_jacobian(rng, 4, 7)
    result = power_balance(gramian32(J), power)
    assert bool(result.converged)
    w = np.asarray(result.solution, np.float64)
    assert np.all(w > 0)
    # (Gw)_k w_k^p = 1 in float64 (up to the 1e-6 ridge and float32 round-off)
    np.testing.assert_allclose((J @ J.T @ w) * w**power, 1.0, rtol=2e-3)


@pytest.mark.parametrize("power", [1.0, 0.5, 2.0])
def test_power_balance_orthogonal_closed_form(power):
    # G = diag(n²): n_k² w_k = w_k^{-p}, so w_k = n_k^{-2/(1+p)}.
    norms = np.array([0.1, 1.0, 30.0])
    w = power_balance(jnp.asarray(np.diag(norms**2), jnp.float32), power).solution
    np.testing.assert_allclose(w, norms ** (-2 / (1 + power)), rtol=1e-4)


def test_power_balance_zero_and_opposite_gradients():
    J = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    with_zero = power_balance(gramian32(J), 1.0)
    without = power_balance(gramian32(J[[0, 2]]), 1.0)
    assert float(with_zero.solution[1]) == 0.0
    np.testing.assert_allclose(np.asarray(with_zero.solution)[[0, 2]], without.solution, rtol=1e-5)
    opposite = power_balance(gramian32(np.array([[1.0, 2.0], [-1.0, -2.0]])), 1.0)
    assert np.all(np.isfinite(opposite.solution)) and np.all(np.asarray(opposite.solution) > 0)
