"""The test tree's rules (CONTRIBUTING.md): tests mirror the package, test modules never import
each other (shared code lives in helper modules such as method_checks.py), and basenames are
unique (pytest's default import mode names a test module by its basename)."""

import ast
import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "autoscale_jax"


def _imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_imports_a_test_module():
    offenders = {
        str(path.relative_to(TESTS)): sorted(n for n in _imported_modules(path) if n[:5] == "test_")
        for path in TESTS.rglob("*.py")
    }
    assert {p: n for p, n in offenders.items() if n} == {}, "move shared code to a helper module"


def test_test_module_basenames_are_unique():
    paths = collections.defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        paths[path.name].append(str(path.relative_to(TESTS)))
    assert {name: found for name, found in paths.items() if len(found) > 1} == {}


def test_method_tests_mirror_the_methods_package():
    modules = {p.stem.lstrip("_") for p in (PACKAGE / "methods").glob("*.py")}
    tests = {p.stem.removeprefix("test_") for p in (TESTS / "methods").glob("test_*.py")}
    assert tests, "no tests/methods/test_*.py found"
    assert sorted(tests - modules) == [], "name each file after the module it tests"
    assert not list(TESTS.glob("test_methods*.py")), "method tests live in tests/methods/"
