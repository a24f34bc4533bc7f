"""One version source: ``autoscale_jax.__version__``, which pyproject.toml reads."""

import importlib.metadata
import pathlib
import re
import tomllib

import autoscale_jax as asj

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_pyproject_reads_the_version_from_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "a second version: remove [project].version"
    assert "version" in pyproject["project"]["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "autoscale_jax.__version__"}


def test_version_is_a_release_string_written_once():
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", asj.__version__)
    # Setuptools reads the attribute without importing the package: it must stay one literal.
    source = (ROOT / "autoscale_jax" / "__init__.py").read_text(encoding="utf-8")
    assert re.findall(r"^__version__ = \"([^\"]+)\"$", source, re.M) == [asj.__version__]


def test_readme_citation_cites_this_version():
    # The one copy that cannot read it: the BibTeX entry users paste.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"^\s*version\s*=\s*\{([^}]*)\},", readme, re.M) == [asj.__version__]


def test_installed_metadata_agrees():
    # An editable install records the version when installed: bumping __version__ needs
    # `pip install -e .` again before this passes.
    assert importlib.metadata.version("autoscale-jax") == asj.__version__
