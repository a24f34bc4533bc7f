"""The README is the front door: short, its commands the ones CI runs, its quick start runnable
as pasted, its links alive. The method table lives in the docs, generated from the registry."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import autoscale_jax as asj

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAIN_COMMAND = (
    'pip install -e ".[bench]" && autoscale-jax bench            # the main job: quick benchmark '
    "suite on embedded data (~10 min, 2 CPU cores)"
)
TEST_COMMAND = 'pip install -e ".[test,bench]" && python -m pytest -q -n auto  # the tests'


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_at_most_150_lines():
    assert len(_readme().splitlines()) <= 150


def test_readme_opens_with_the_two_setup_commands():
    lines = _readme().splitlines()
    assert lines[2:6] == ["```bash", MAIN_COMMAND, TEST_COMMAND, "```"]


def test_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # CI installs a superset of the README's extras, then runs the same pytest command.
    ci_extras = set(re.search(r'pip install --quiet -e "\.\[([\w,]+)\]"', ci).group(1).split(","))
    assert {"test", "bench"} <= ci_extras
    ci_pytest = [line.strip() for line in ci.splitlines() if line.strip().startswith("python -m")]
    readme_pytest = TEST_COMMAND.split("&&")[1].split("#")[0].strip()
    assert any(line.startswith(readme_pytest) for line in ci_pytest), (readme_pytest, ci_pytest)


def test_readme_python_blocks_run_as_pasted(tmp_path):
    """Every python block, in order, in a fresh interpreter outside the repository (no
    conftest namespace): the quick start defines everything it uses."""
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    assert blocks, "the README lost its quick start"
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = re.search(r"task weights: \[([^\]]*)\]", done.stdout)
    assert printed, done.stdout
    weights = [float(w) for w in printed.group(1).split()]
    # AutoScale's weights sum to K; the task with 10x targets (index 1) counts least.
    assert len(weights) == 3 and abs(sum(weights) - 3.0) < 1e-4, weights
    assert min(weights) == weights[1], weights


def test_readme_links_point_at_files_and_every_docs_page():
    text = _readme()
    targets = re.findall(r"\]\(((?!https?://)[^)#]+)\)", text)
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= set(targets), sorted(pages - set(targets))


def test_readme_states_no_method_count():
    """Adding a method edits no page: the README names no count of methods (the registry,
    ``asj.methods.available()``, and the generated docs table are the count)."""
    text = _readme()
    assert "all behind one interface" in text
    assert re.findall(r"\b\d+ (?:registered )?methods\b|\ball \d+\b", text) == []


def test_docs_method_table_is_generated_from_the_registry():
    """The table that left the README: docs/methods.md keeps the marker the docs hook fills."""
    assert "<!-- methods-table -->" in (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    table = hooks.methods_table()
    for name in asj.methods.available():
        assert f"| `{name}` |" in table, name


def test_every_docs_page_is_in_the_mkdocs_nav():
    nav = set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text("utf-8"), re.M))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages <= nav, sorted(pages - nav)
