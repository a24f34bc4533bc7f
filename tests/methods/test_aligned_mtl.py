"""Aligned-MTL: against a float64 numpy reference built from the SVD of the Jacobian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_survives_nan

import autoscale_jax as asj
from autoscale_jax.methods.aligned_mtl import aligned_mtl, alignment


def numpy_alignment(J: np.ndarray, scale: str = "min") -> np.ndarray:
    """``B = σ U S⁻¹ Uᵀ`` from the thin SVD ``J = U S Wᵀ`` (so ``B J = σ U Wᵀ``), float64.

    Eigenvalues ``S²`` at most ``K · eps32 · λ_max`` are dropped (the documented cut-off).
    """
    U, S, _ = np.linalg.svd(np.asarray(J, np.float64), full_matrices=False)
    rtol = J.shape[0] * np.finfo(np.float32).eps
    kept = (rtol * (S**2).max() < S**2) & (S > 0)
    U, S = U[:, kept], S[kept]
    if not kept.any():
        return np.zeros((J.shape[0], J.shape[0]))
    eigenvalues = np.sort(S**2)
    sigma = {
        "min": np.sqrt(eigenvalues[0]),
        "median": np.sqrt(eigenvalues[(len(eigenvalues) - 1) // 2]),
        "rmse": np.sqrt(eigenvalues.mean()),
    }[scale]
    return sigma * (U / S) @ U.T


def moderate_jacobian(rng: np.random.Generator, num_tasks: int, dim: int) -> np.ndarray:
    """Task norms within a factor 100: float32 eigenvalues of the Gramian are then accurate to
    ~1e-5 relative (they carry ~K·eps·λ_max absolute error, see the docstring)."""
    return rng.normal(size=(num_tasks, dim)) * 10.0 ** rng.uniform(-1, 1, size=(num_tasks, 1))


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def flat(update: dict) -> np.ndarray:
    return np.concatenate([np.asarray(update["a"]).ravel(), np.asarray(update["b"]).ravel()])


def run_aligned(J: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray, int]:
    tx = aligned_mtl(J.shape[0], **kwargs)
    update, state = tx.update(as_task_grads(J), tx.init(None))
    return flat(update), np.asarray(asj.task_weights(state)), int(state.memory)


def gram(J: np.ndarray) -> jax.Array:
    return jnp.asarray(J @ J.T, jnp.float32)


def test_torchjd_jacobian():
    update, weights, rank = run_aligned(TORCHJD_JACOBIAN)
    expected = numpy_alignment(TORCHJD_JACOBIAN) @ np.ones(2)
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    # TorchJD's AlignedMTL (mean preferences) gives half of this: [0.2133, 0.9673, 0.9673].
    np.testing.assert_allclose(update / 2, [0.2133, 0.9673, 0.9673], atol=1e-4)
    assert rank == 2


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
@pytest.mark.parametrize("scale", ["min", "median", "rmse"])
def test_matches_svd_reference(rng, num_tasks, dim, scale):
    J = moderate_jacobian(rng, num_tasks, dim)
    preferences = rng.uniform(0.5, 2.0, num_tasks)
    update, weights, rank = run_aligned(J, scale=scale, preferences=preferences)
    expected = numpy_alignment(J, scale) @ preferences
    np.testing.assert_allclose(weights, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())
    reference = expected @ J
    np.testing.assert_allclose(update, reference, rtol=1e-3, atol=1e-5 * np.abs(reference).max())
    assert rank == num_tasks


def test_ill_conditioned_jacobian_matches_in_float64(rng, x64):
    # Norms spanning 1e-2..1e2: λ_min/λ_max ~ 3e-6, beyond float32 accuracy of the eigenvalues.
    J = random_jacobian(rng, 4, 7)
    tx = aligned_mtl(4, rtol=4 * float(np.finfo(np.float32).eps))
    update, state = tx.update({"w": jnp.asarray(J, jnp.float64)}, tx.init(None))
    expected = numpy_alignment(J) @ np.ones(4)
    assert update["w"].dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(update["w"]), expected @ J, rtol=1e-9)
    np.testing.assert_allclose(state.task_weights, expected, rtol=1e-6)


def test_aligned_gradients_have_condition_number_one(rng):
    J = rng.normal(size=(4, 9)) * np.array([[1.0], [2.0], [5.0], [20.0]])
    aligned = alignment(gram(J))
    B = np.asarray(aligned.matrix, np.float64)
    aligned_gram = B @ (J @ J.T) @ B.T
    sigma = float(aligned.scale)
    np.testing.assert_allclose(aligned_gram, sigma**2 * np.eye(4), atol=1e-4 * sigma**2)
    np.testing.assert_allclose(sigma, np.linalg.svd(J, compute_uv=False).min(), rtol=1e-4)


def test_rank_deficient_alignment_is_isotropic_on_the_kept_subspace(rng):
    J = random_jacobian(rng, 4, 2)  # K > parameters: rank 2
    aligned = alignment(gram(J))
    assert int(aligned.rank) == 2
    B = np.asarray(aligned.matrix, np.float64)
    eigenvalues = np.linalg.eigvalsh(B @ (J @ J.T) @ B.T)
    sigma2 = float(aligned.scale) ** 2
    np.testing.assert_allclose(eigenvalues[-2:], [sigma2, sigma2], rtol=1e-3)
    np.testing.assert_allclose(eigenvalues[:2], 0.0, atol=1e-4 * sigma2)
    np.testing.assert_allclose(B, numpy_alignment(J), rtol=1e-3, atol=1e-4 * np.abs(B).max())


def test_orthogonal_gradients_are_rescaled_to_the_smallest_norm():
    J = np.diag([1.0, 3.0, 10.0])
    update, weights, _ = run_aligned(J)
    np.testing.assert_allclose(weights, [1.0, 1 / 3, 1 / 10], rtol=1e-5)
    np.testing.assert_allclose(update, np.ones(3), rtol=1e-5)


def test_permuting_tasks_permutes_weights_and_keeps_the_update(rng):
    J = moderate_jacobian(rng, 4, 7)
    perm = np.array([3, 1, 0, 2])
    update, weights, _ = run_aligned(J)
    update_p, weights_p, _ = run_aligned(J[perm])
    np.testing.assert_allclose(weights_p, weights[perm], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(update_p, update, rtol=1e-3, atol=1e-5 * np.abs(update).max())


def test_weights_are_invariant_to_a_common_rescaling(rng):
    J = random_jacobian(rng, 3, 6)
    _, weights, _ = run_aligned(J)
    _, weights_scaled, _ = run_aligned(J * 37.0)
    np.testing.assert_allclose(weights_scaled, weights, rtol=1e-4)


def test_zero_gradient_task_and_all_zero_are_defined(rng):
    J = random_jacobian(rng, 3, 6)
    J[0] = 0.0
    update, weights, rank = run_aligned(J)
    assert np.all(np.isfinite(update)) and weights[0] == 0.0 and rank == 2
    expected = numpy_alignment(J) @ np.ones(3)
    np.testing.assert_allclose(weights, expected, rtol=1e-3, atol=1e-6)
    update, weights, rank = run_aligned(np.zeros((3, 4)))
    np.testing.assert_array_equal(update, 0.0)  # all zero: not solved, initial weights kept
    assert rank == 0 and np.all(weights == 1.0)


def test_identical_gradients_keep_one_direction():
    g = np.array([[1.0, -2.0, 0.5, 3.0]])
    update, weights, rank = run_aligned(np.vstack([g, g]))
    assert rank == 1
    # One aligned direction of singular value sqrt(2)·||g||: each aligned gradient is g.
    np.testing.assert_allclose(weights, [1.0, 1.0], rtol=1e-4)
    np.testing.assert_allclose(update, 2 * g[0], rtol=1e-4)


def test_jit_compiles_once_and_nan_keeps_state(rng):
    assert_compiles_once_and_survives_nan(aligned_mtl(3), 3, rng)


def test_checks_arguments():
    with pytest.raises(ValueError, match="scale"):
        aligned_mtl(2, scale="max")
    with pytest.raises(ValueError, match="preferences"):
        aligned_mtl(2, preferences=[1.0, 2.0, 3.0])
