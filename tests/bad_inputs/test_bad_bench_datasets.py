"""The dataset registry's inputs: a dataset module's own declaration (``DATASET``, read by
``_registry.declared`` when autoscale_jax.bench.datasets is imported) that cannot be collected
is a clear error naming the module and the fix, and so is a dataset or benchmark name declared
twice (``_registry.collect`` over a package of such modules).

One table: the modules of a throwaway package (name -> source), the error type and a message
fragment.
"""

import importlib
import sys
import textwrap

import pytest

from autoscale_jax.bench.datasets._registry import collect

HEAD = '''"""My data: a card."""
from autoscale_jax.bench.datasets import BenchmarkDefinition, DatasetInfo


def {name}(*, seed=0):
    raise AssertionError("never loaded")
'''


def dataset(name, entry=None, head=HEAD):
    """A module source that defines a loader ``name`` and declares ``DATASET = <entry>``
    (default: a plain entry for it)."""
    entry = entry or f'DatasetInfo("{name}", {name})'
    return head.format(name=name) + f"\nDATASET = {entry}\n"


def bench(name, dataset_name):
    return f'BenchmarkDefinition("{name}", "{dataset_name}", {{}}, {{}}, 1e-3, "note")'


CASES = [
    pytest.param(
        {"_my_data": HEAD.format(name="my_data")},
        r"fake_\w+\._my_data declares no DATASET: a private module of "
        r"autoscale_jax.bench.datasets is a dataset and declares DATASET = DatasetInfo\(",
        id="module-without-dataset",
    ),
    pytest.param(
        {"_my_data": dataset("my_data", '{"name": "my_data"}')},
        r"_my_data declares no DATASET",
        id="dataset-not-a-dataset-info",
    ),
    pytest.param(
        {"_my_data": dataset("my_data", 'DatasetInfo("my_data", len)')},
        r"_my_data: DATASET 'my_data': its loader is defined in builtins, not in fake_\w+\."
        r"_my_data: a dataset module declares the loader it defines",
        id="loader-defined-elsewhere",
    ),
    pytest.param(
        {"_my_data": dataset("load_my_data", 'DatasetInfo("my_data", load_my_data)')},
        r"DATASET 'my_data': its loader is called 'load_my_data': name the loader after the "
        "dataset",
        id="loader-named-otherwise",
    ),
    pytest.param(
        {
            "_my_data": dataset(
                "my_data", f'DatasetInfo("my_data", my_data, benchmarks=({bench("b", "qm9")},))'
            )
        },
        r"DATASET 'my_data': benchmark 'b' is not a BenchmarkDefinition of dataset 'my_data'",
        id="benchmark-of-another-dataset",
    ),
    pytest.param(
        {"_my_data": dataset("my_data", 'DatasetInfo("my_data", my_data, packages=("foo",))')},
        r"DATASET 'my_data': packages/data_dir need install= \(the step that adds them\)",
        id="packages-without-install",
    ),
    pytest.param(
        {
            "_my_data": dataset(
                "my_data", 'DatasetInfo("my_data", my_data, test_options={"num_rows": 5})'
            )
        },
        r"DATASET 'my_data': test_options \['num_rows'\] are not loader arguments",
        id="test-option-not-a-loader-argument",
    ),
    pytest.param(
        {"_my_data": dataset("my_data", head=HEAD.split("\n", 1)[1])},
        r"DATASET 'my_data': the module has no docstring; it is the data card",
        id="no-data-card",
    ),
    pytest.param(
        {"_a": dataset("my_data"), "_b": dataset("my_data")},
        r"dataset 'my_data' is declared twice: in fake_\w+\._a and fake_\w+\._b",
        id="dataset-declared-twice",
    ),
    pytest.param(
        {
            "_a": dataset("a", f'DatasetInfo("a", a, benchmarks=({bench("shared", "a")},))'),
            "_b": dataset("b", f'DatasetInfo("b", b, benchmarks=({bench("shared", "b")},))'),
        },
        "benchmark 'shared' is declared twice: by dataset 'a' and 'b'",
        id="benchmark-declared-twice",
    ),
]


@pytest.mark.parametrize("modules, message", CASES)
def test_bad_bench_datasets(modules, message, tmp_path, request):
    package = "fake_" + request.node.callspec.id.replace("-", "_")
    folder = tmp_path / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "toy.py").write_text("# a public module: never a dataset\nraise AssertionError\n")
    (folder / "_common.py").write_text("# a shared module: never a dataset\nraise AssertionError\n")
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        try:
            with pytest.raises(ValueError, match=message):
                collect(package, [str(folder)])
        finally:
            for loaded in [m for m in sys.modules if m.split(".")[0] == package]:
                del sys.modules[loaded]


def test_a_package_of_good_modules_collects_in_name_order(tmp_path):
    folder = tmp_path / "fake_good"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "_zeta.py").write_text(dataset("zeta"))
    (folder / "_alpha.py").write_text(
        dataset("alpha", f'DatasetInfo("alpha", alpha, benchmarks=({bench("a1", "alpha")},))')
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))
        try:
            registry = collect("fake_good", [str(folder)])
        finally:
            for loaded in [m for m in sys.modules if m.split(".")[0] == "fake_good"]:
                del sys.modules[loaded]
    assert list(registry) == ["alpha", "zeta"]
    assert registry["alpha"].card == "My data: a card."
    assert [b.name for b in registry["alpha"].benchmarks] == ["a1"]
