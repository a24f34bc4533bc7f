"""The shared namespace of every doctest (docstrings under autoscale_jax/ and docs/*.md).

Examples may use, without defining them: ``asj``, ``asjf`` (``autoscale_jax.flax`` when Flax
is installed), ``jax``, ``jnp``, ``np``, ``optax``, a two-task problem (``K = 2``, ``params``,
``loss_fn(params, batch) -> [2] losses``, ``batch``, ``batches``), its ``losses`` and stacked
``task_grads`` at ``params``, their Gramian ``G``, a PRNG ``key`` and ``estimation_steps``.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_ROOT = pathlib.Path(__file__).resolve().parent

# The tests build many identical small programs from distinct closures (parametrized methods,
# the same toy problem): XLA's persistent cache compiles each once per run (about a quarter
# off tests/methods on 2 cores). A fresh folder per run, made by the process that starts the
# pytest-xdist workers, which inherit it; never a folder left from an earlier run.
_CACHE_VARIABLE = "AUTOSCALE_JAX_TEST_XLA_CACHE"
_OWN_CACHE = pytest.StashKey[str]()  # set only in the process that made the folder


def pytest_configure(config: pytest.Config) -> None:
    import jax

    if _CACHE_VARIABLE not in os.environ:
        os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="autoscale-jax-xla-")
        config.stash[_OWN_CACHE] = os.environ[_CACHE_VARIABLE]
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_VARIABLE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if own := config.stash.get(_OWN_CACHE, None):
        shutil.rmtree(own, ignore_errors=True)
        del os.environ[_CACHE_VARIABLE]


def _namespace() -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import autoscale_jax as asj

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {
        "trunk": jax.random.normal(keys[0], (3, 4)) / 2.0,
        "heads": jax.random.normal(keys[1], (4, 2)) / 2.0,
    }

    def loss_fn(params, batch):
        """Two regression tasks on a shared tanh trunk: losses of shape [2]."""
        pred = jnp.tanh(batch["x"] @ params["trunk"]) @ params["heads"]
        return jnp.mean((pred - batch["y"]) ** 2, axis=0)

    def make_batch(key):
        kx, ky = jax.random.split(key)
        return {
            "x": jax.random.normal(kx, (8, 3)),
            "y": jax.random.normal(ky, (8, 2)) * jnp.array([1.0, 10.0]),
        }

    batches = [make_batch(k) for k in jax.random.split(keys[2], 4)]
    batch = batches[0]
    losses, task_grads = asj.task_value_and_grad(loss_fn)(params, batch)
    namespace = {
        "asj": asj,
        "jax": jax,
        "jnp": jnp,
        "np": np,
        "optax": optax,
        "K": 2,
        "params": params,
        "loss_fn": loss_fn,
        "batch": batch,
        "batches": batches,
        "losses": losses,
        "task_grads": task_grads,
        "G": asj.metrics.gramian(task_grads),
        "key": keys[3],
        "estimation_steps": 2,
    }
    try:
        import autoscale_jax.flax as asjf

        namespace["asjf"] = asjf
    except ImportError:  # the core works without Flax
        pass
    return namespace


_BENCH: list = []


# Examples that load an optional data set skip where it is missing, as the dataset tests do:
# what each needs comes from the datasets' own declarations (packages, data folder, install
# step), so a new dataset needs no line here. A fresh machine has none of them.
_DATASETS_PACKAGE = "autoscale_jax.bench.datasets."
_FINGERPRINTS = _DATASETS_PACKAGE + "_fingerprints.morgan_fingerprints"


def _missing_data(example: str) -> str | None:
    """Why the doctest ``example`` cannot run here (None: it can)."""
    if not example.startswith(_DATASETS_PACKAGE):
        return None
    if example == _FINGERPRINTS:
        return None if importlib.util.find_spec("rdkit") else "rdkit (bash .ci/install-data)"
    from autoscale_jax.bench import datasets

    for info in datasets.DATASETS.values():
        module = info.loader.__module__
        if example in (module, f"{module}.{info.loader.__name__}"):
            return datasets.missing_data(info)
    return None


def _tiny_benchmark():
    """MultiMNIST at 14x14 with 256 training images and a 16-unit trunk: seconds per run."""
    if not _BENCH:
        from autoscale_jax.bench.running.benchmark import load_benchmark

        _BENCH.append(
            load_benchmark(
                "multi_mnist",
                dataset_options={
                    "image_size": 14,
                    "num_train": 256,
                    "num_validation": 64,
                    "num_test": 64,
                },
                model_options={"trunk_sizes": (16,)},
            )
        )
    return _BENCH[0]


def _mapped_regions() -> int | None:
    """The memory mappings of this process (``None`` where ``/proc`` does not exist)."""
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs() -> Iterator[None]:
    """Frees the compiled programs after a test module once the process maps many regions.

    Why: XLA:CPU maps a few memory regions per compiled executable and JAX's caches keep every
    executable alive. Over the whole suite in one process that passed Linux's default limit of
    65530 mappings per process (``vm.max_map_count``), and the next compilation segfaulted.
    Clearing after every module instead made the suite 40% slower (recompilations).
    """
    yield
    regions = _mapped_regions()
    if regions is not None and regions > 20_000:
        import jax

        jax.clear_caches()


@pytest.fixture(autouse=True)
def _doctest_namespace(request: pytest.FixtureRequest) -> None:
    """Fills pytest's ``doctest_namespace`` for doctests only (tests have their own data).

    The benchmark package's examples also get ``bench``: a tiny MultiMNIST benchmark.
    """
    if not isinstance(request.node, pytest.DoctestItem):
        return
    if missing := _missing_data(request.node.name):
        pytest.skip(f"{request.node.name}: {missing}")
    namespace = request.getfixturevalue("doctest_namespace")
    namespace.update(_namespace())
    if (_ROOT / "autoscale_jax" / "bench") in pathlib.Path(str(request.node.path)).parents:
        namespace["bench"] = _tiny_benchmark()
    # Examples that write files (plots, run stores) write into a scratch folder.
    tmp_path = request.getfixturevalue("tmp_path")
    request.getfixturevalue("monkeypatch").chdir(tmp_path)
