"""The API reference renders: docs/check_site.py fails on what mkdocs --strict lets through.

The scanner runs on small HTML pages (one that renders, and one per way a page can fail); the
docstring rewriting of docs/griffe_docstrings.py and the maths of docs/hooks.py run on small
strings; one slow test builds the site and checks it.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_site = _load("check_site")
griffe_docstrings = _load("griffe_docstrings")
hooks = _load("hooks")

GOOD_PAGE = """<html><head><script>if (a >>> 1) { x = "\\\\frac"; }</script></head><body>
<p>See <a class="autorefs autorefs-internal" href="#a.f"><code>f</code></a> and
<span title="a._private.g"><code>g</code></span>.</p>
<div class="arithmatex"><math display="block"><mi>x</mi></math></div>
<p>Inline <span class="arithmatex"><math><mi>y</mi></math></span>.</p>
<pre><code class="language-pycon">&gt;&gt;&gt; f(1)  # :func:`f` in code is fine
2
</code></pre>
<p>Examples:</p>
<div class="highlight"><pre><span></span><code><span class="gp">&gt;&gt;&gt; </span>g()
</code></pre></div>
<blockquote><p>A quote (one level) is fine.</p></blockquote>
</body></html>
"""


def test_a_page_that_renders_has_no_problem_and_its_counts():
    report = check_site.scan_page(GOOD_PAGE, examples=2, formulas=2)
    assert report.problems == []
    assert (report.code_blocks, report.example_blocks) == (2, 2)
    assert (report.links, report.plain_refs, report.maths) == (1, 1, 2)


# Each case: the page, the docstrings' examples and formulas, the (line, message) expected.
BAD_PAGES = [
    pytest.param(
        "<p>Example:</p>\n<blockquote>\n<blockquote>\n<blockquote>\n<p>x = f(1)</p>",
        0,
        0,
        (3, "nested block quotes"),
        id="examples-as-nested-quotes",
    ),
    pytest.param(
        "<p>text</p>\n<p>&gt;&gt;&gt; f(1)</p>", 0, 0, (2, ">>> outside"), id="prompt-in-text"
    ),
    pytest.param(
        "<p>built by\n:func:<code>multitask_train_step</code></p>",
        0,
        0,
        (2, "raw Sphinx role :func:"),
        id="raw-func-role",
    ),
    pytest.param(
        "<p>the :class:<code>~a.b.C</code></p>", 0, 0, (1, "raw Sphinx role :class:"), id="class"
    ),
    pytest.param("<p>see :mod:<code>a.b</code></p>", 0, 0, (1, "role :mod:"), id="raw-mod-role"),
    pytest.param(
        "<p>with :math:<code>x^2</code></p>", 0, 0, (1, "role :math:"), id="raw-math-role"
    ),
    pytest.param(
        "<p>one\n.. math:: g_k = x</p>", 0, 0, (2, "raw directive .. math::"), id="math-directive"
    ),
    pytest.param(
        "<p>[\n  w_k \\qquad y\n]</p>", 0, 0, (2, "raw TeX \\qquad"), id="tex-lost-its-block"
    ),
    pytest.param(
        '<div class="arithmatex">\\[x\\]</div>', 0, 0, (1, "raw TeX \\["), id="tex-not-mathml"
    ),
    pytest.param(
        '<p><autoref identifier="a.f" optional><code>f</code></autoref></p>',
        0,
        0,
        (1, "unresolved cross-reference"),
        id="autoref-left",
    ),
    pytest.param(
        "<pre><code>x = 1</code></pre>",
        1,
        0,
        (1, "1 docstrings with >>> examples, 0 code blocks"),
        id="examples-missing",
    ),
    pytest.param(
        "<p>no maths</p>", 0, 2, (1, "2 formulas in the docstrings, 0 MathML"), id="maths-missing"
    ),
]


@pytest.mark.parametrize(("html", "examples", "formulas", "problem"), BAD_PAGES)
def test_a_page_that_does_not_render_is_a_problem(html, examples, formulas, problem):
    problems = check_site.scan_page(html, examples, formulas).problems
    line, fragment = problem
    assert [p for p in problems if p[0] == line and fragment in p[1]], problems


def _resolve(name: str) -> str | None:
    return {"f": "pkg.mod.f", "a.B": "pkg.a.B"}.get(name)


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        pytest.param(
            "See :func:`f` and :class:`~a.B`.",
            'See <autoref identifier="pkg.mod.f" optional>`f`</autoref> and '
            '<autoref identifier="pkg.a.B" optional>`B`</autoref>.',
            id="roles-resolved",
        ),
        pytest.param(
            "See :data:`other.X` and :meth:`the method <a.B>`.",
            'See <autoref identifier="other.X" optional>`other.X`</autoref> and '
            '<autoref identifier="pkg.a.B" optional>`the method`</autoref>.',
            id="unresolved-kept-and-explicit-title",
        ),
        pytest.param(
            "Summary.\n\nExample:\n  >>> f(1)\n  2",
            "Summary.\n\nExamples:\n  >>> f(1)\n  2",
            id="example-section-becomes-examples",
        ),
        pytest.param(
            "It runs (here):\n\n  >>> class A:\n  ...   def __init__(self): pass\n\nmore",
            "It runs (here):\n\n\n```pycon\n>>> class A:\n"
            "...   def __init__(self): pass\n```\n\n\nmore",
            id="prose-run-fenced-at-column-0",
        ),
        pytest.param(
            "Computes\n\n.. math:: g = x\n   + y\n\nas",
            "Computes\n\n\n\\[\n  g = x\n  + y\n\\]\n\n\nas",
            id="math-directive-block",
        ),
        pytest.param(
            "1. One\n   :math:`x`\n\n   .. math:: y\n2. Two",
            "1. One\n    \\(x\\)\n\n\n    \\[\n      y\n    \\]\n\n2. Two",
            id="list-item-content-at-4-columns",
        ),
        pytest.param(
            "Args:\n  x: the input, see :func:`f`.",
            'Args:\n  x: the input, see <autoref identifier="pkg.mod.f" optional>`f`</autoref>.',
            id="roles-in-a-section",
        ),
    ],
)
def test_docstrings_are_rewritten_for_mkdocstrings(docstring, expected):
    assert griffe_docstrings.normalise(docstring, _resolve) == expected


def test_maths_become_mathml_and_unknown_tex_is_an_error():
    pytest.importorskip("latex2mathml")
    html = '<p>a <span class="arithmatex">\\(x &lt; y\\)</span></p>'
    rendered = hooks.render_maths(html)
    assert '<span class="arithmatex"><math' in rendered and "<mo>&#x0003C;</mo>" in rendered
    assert "\\(" not in rendered
    assert "operatorname" not in hooks.tex_to_mathml(r"\arg\min_x f", "inline")
    with pytest.raises(ValueError, match=r"TeX command \\notacommand .* add it to TEX_MACROS"):
        hooks.tex_to_mathml(r"\notacommand x", "block")


@pytest.mark.slow
def test_the_built_site_passes_the_check(tmp_path):
    """The real site: mkdocs build --strict, then the check (about 30 s)."""
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    root = DOCS.parent
    site = tmp_path / "site"
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    subprocess.run(build, cwd=root, check=True, capture_output=True, timeout=300)
    check = [sys.executable, str(DOCS / "check_site.py"), str(site)]
    result = subprocess.run(check, cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"\[check_site\] 0 problem\(s\) in \d+ API pages", result.stdout)
