import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax import _packing


def test_pack_round_trips_mixed_dtypes_exactly():
    tree = {
        "big_count": jnp.array(2**31 - 5, jnp.int32),  # not representable in float32
        "gramian": jnp.arange(9.0).reshape(3, 3) / 7,
        "mask": jnp.array([3, 1, 2], jnp.int32),
        "scalar": jnp.array(np.pi, jnp.float32),
    }
    packed = _packing.pack(tree)
    assert [a.dtype for a in packed] == [jnp.float32, jnp.int32]
    assert [a.shape for a in packed] == [(10,), (4,)]
    back = _packing.unpack(packed, jax.eval_shape(lambda: tree))
    jax.tree.map(np.testing.assert_array_equal, back, tree)


def test_unpack_rejects_a_wrong_number_of_arrays():
    tree = (jnp.zeros(2), jnp.zeros((), jnp.int32))
    with pytest.raises(ValueError, match="expected 2 packed arrays, got 1"):
        _packing.unpack(_packing.pack(tree)[:1], tree)


def test_autoscale_state_is_four_arrays_whatever_k_and_reads_back_its_records():
    # Phase 2 passes the phase-1 records through: as two packed arrays, not sixteen.
    for num_tasks in (2, 17):
        tx = asj.autoscale(num_tasks, estimation_steps=3, window=2)
        state = tx.init(None)
        assert len(jax.tree.leaves(state)) == 4
        G = jnp.diag(jnp.arange(1.0, num_tasks + 1))
        for _ in range(3):
            _, state = tx.gramian_path.weights(state, asj.ObservedGramian(G), jnp.ones(num_tasks))
        stats = state.window_statistics
        assert int(stats.windows_closed) == 2 and int(stats.count) == 0
        np.testing.assert_allclose(state.metrics.condition_number, 1.0, rtol=1e-5)
