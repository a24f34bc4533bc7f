"""The README's method table is the registry's, so it cannot drift from the code."""

import pathlib
import re

import autoscale_jax as asj

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_method_table_equals_the_registry():
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- methods-table -->\n(.*?)\n<!-- /methods-table -->", text, re.S)
    assert match, "README lost its method-table markers"
    assert match.group(1) == asj.methods.table()
    # Every registered name appears as a row.
    for name in asj.methods.available():
        assert f"| `{name}` |" in match.group(1), name
