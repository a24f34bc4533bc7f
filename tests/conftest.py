"""Shared test fixtures: small fixed and random Jacobians."""

import functools

import jax
import numpy as np
import pytest

# The fixed Jacobian TorchJD uses for its reference values: two conflicting tasks.
TORCHJD_JACOBIAN = np.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def random_jacobian(rng: np.random.Generator, num_tasks: int, dim: int) -> np.ndarray:
    """Rows with very different norms, so weighting is not trivial."""
    scales = 10.0 ** rng.uniform(-2, 2, size=(num_tasks, 1))
    return rng.normal(size=(num_tasks, dim)) * scales


def as_task_grads(jacobian: np.ndarray) -> dict:
    """Splits a [K, P] Jacobian into a two-leaf params pytree with a leading task axis."""
    split = jacobian.shape[1] // 2
    return {
        "a": np.asarray(jacobian[:, :split], np.float32),
        "b": np.asarray(jacobian[:, split:], np.float32),
    }


# Lines the CI log should show (notebook run times from the wheel, doctest counts, ...),
# printed in a section of pytest's terminal summary. Tests add them with the
# ``ci_report`` fixture; they travel as user properties of the test reports, so they reach
# the summary from pytest-xdist workers too.
@pytest.fixture
def ci_report(record_property):
    """``ci_report(line)`` adds ``line`` to the "autoscale-jax CI report" summary section."""

    def add(line: str) -> None:
        record_property("ci_report", line)

    return add


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reports = [
        report
        for key in ("passed", "failed")
        for report in terminalreporter.stats.get(key, [])
        if report.when == "call"
    ]
    lines = [value for r in reports for name, value in r.user_properties if name == "ci_report"]
    doctests = [r for r in reports if "::" in r.nodeid and _is_doctest(r.nodeid)]
    if doctests:
        failed = sum(r.failed for r in doctests)
        lines.append(f"doctests: {len(doctests) - failed} passed, {failed} failed")
    if lines:
        terminalreporter.section("autoscale-jax CI report")
        for line in lines:
            terminalreporter.write_line(line)


def _is_doctest(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path.endswith(".md") or (path.endswith(".py") and not path.startswith("tests/"))


def shapes_in_jaxpr(fn, *args, **kwargs) -> set:
    """Every intermediate shape of ``fn``'s jaxpr, sub-jaxprs (cond branches, scans) included."""
    shapes = set()

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            shapes.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
            for param in eqn.params.values():
                for sub in param if isinstance(param, tuple | list) else (param,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        visit(inner)

    visit(jax.make_jaxpr(functools.partial(fn, **kwargs))(*args).jaxpr)
    return shapes
