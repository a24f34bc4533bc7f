"""The notebooks: generated from one repository URL, harmless to install where installed, and
executed top to bottom against the built wheel in a fresh virtual environment (as Colab would
run them after its ``%pip install``)."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "notebooks"))
import make_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_generated_from_pyproject():
    """Committed notebooks equal what make_notebooks.py writes from pyproject's one URL."""
    assert {p.name for p in NOTEBOOKS} == set(make_notebooks.NOTEBOOKS)
    with open(ROOT / "pyproject.toml", "rb") as handle:
        url = tomllib.load(handle)["project"]["urls"]["Repository"]
    owner_repo = url.removeprefix("https://github.com/").strip("/")
    for path in NOTEBOOKS:
        assert path.read_text(encoding="utf-8") == make_notebooks.render(path.name), (
            f"{path.name} is stale: run python notebooks/make_notebooks.py"
        )
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        badge, install = "".join(cells[0]["source"]), "".join(cells[1]["source"])
        colab = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/"
        assert "colab-badge.svg" in badge and f"({colab}{path.name})" in badge
        assert f"@ git+{url}" in install and "%pip install" in install
        assert "<" not in install  # no placeholder left


def test_readme_and_docs_name_the_same_repository():
    """The README's Colab links, the docs' install line and mkdocs' repo_url follow pyproject."""
    url = make_notebooks.repository_url()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in make_notebooks.NOTEBOOKS:
        assert make_notebooks.colab_url(name, url) in readme, name
    assert f"repo_url: {url}" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"git+{url}" in (ROOT / "docs" / "index.md").read_text(encoding="utf-8")


def _run_install_cell(source: str, *, installed: bool, install_works: bool = True) -> list[str]:
    """Runs the install cell as IPython would (magics transformed) with a recording shell
    whose ``%pip`` makes ``autoscale_jax`` importable only when ``install_works``."""
    from IPython.core.inputtransformer2 import TransformerManager

    calls = []
    present = [installed]

    class Shell:
        def run_line_magic(self, name, line):
            calls.append(f"%{name} {line}")
            present[0] = install_works

    code = TransformerManager().transform_cell(source)
    namespace = {"get_ipython": Shell}
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: (
        (object() if present[0] else None) if name == "autoscale_jax" else None
    )
    try:
        exec(code, namespace)
    finally:
        importlib.util.find_spec = real_find_spec
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_is_harmless_when_installed(path):
    source = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][1]["source"])
    assert _run_install_cell(source, installed=True) == []
    (call,) = _run_install_cell(source, installed=False)
    assert call.startswith("%pip install") and "autoscale-jax[" in call


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_failed_install_stops_the_notebook_in_its_cell(path):
    """%pip does not raise when pip fails: the cell checks and raises, so the notebook stops
    there instead of failing later with a ModuleNotFoundError."""
    source = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][1]["source"])
    with pytest.raises(RuntimeError, match="Installing autoscale-jax failed"):
        _run_install_cell(source, installed=False, install_works=False)


# Runs inside the fresh environment: executes each notebook from a scratch folder (so the
# source tree is not importable) after a first cell that proves the wheel is what runs.
_RUNNER = r"""
import json, os, sys, time
import nbclient, nbformat

results = {}
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        "import autoscale_jax, sys\n"
        "assert autoscale_jax.__file__.startswith(sys.prefix), autoscale_jax.__file__"
    ))
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3").execute(
        cwd=os.path.dirname(path)
    )
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    results[os.path.basename(path)] = {"seconds": time.perf_counter() - start,
                                       "errors": len(errors)}
print(json.dumps(results))
"""


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


@pytest.mark.slow
def test_wheel_builds_installs_and_runs_every_notebook(tmp_path, ci_report):
    """python -m build makes a wheel and an sdist; the wheel installs into a fresh venv whose
    dependencies are preinstalled (as in Colab), and every notebook runs against it."""
    start = time.perf_counter()
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for required in (
        "autoscale_jax/py.typed",
        "autoscale_jax/flax.py",
        "autoscale_jax/bench/cli.py",
    ):
        assert required in names, required
    assert not any(n.startswith(("tests/", "notebooks/")) for n in names)
    build_seconds = time.perf_counter() - start

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The preinstalled stack (jax, flax, optax, matplotlib, Jupyter), without this checkout:
    # a plain path entry, so the editable install's own .pth finder is not loaded.
    pathlib.Path(purelib, "preinstalled_stack.pth").write_text(_site_packages() + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", str(wheels[0])],
        check=True,
        capture_output=True,
    )
    where = subprocess.run(
        [str(python), "-c", "import autoscale_jax; print(autoscale_jax.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert where.startswith(str(venv)), where

    scratch = tmp_path / "notebooks"
    scratch.mkdir()
    copies = []
    for path in NOTEBOOKS:
        copies.append(scratch / path.name)
        copies[-1].write_bytes(path.read_bytes())
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(python), "-c", _RUNNER, *map(str, copies)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    ci_report(f"wheel + sdist built (python -m build) in {build_seconds:.0f} s")
    for name, result in results.items():
        ci_report(f"notebook {name} executed from the wheel in {result['seconds']:.0f} s")
        assert result["errors"] == 0, name
    assert set(results) == {p.name for p in NOTEBOOKS}
