"""Checks that the built API reference renders: examples as code, maths as maths, no raw roles.

``mkdocs build --strict`` passes pages whose ``>>>`` examples render as nested block quotes and
whose Sphinx roles (``:func:`` ...) and ``.. math::`` blocks stay raw text: none of that is a
warning. After a build, this script scans every API page of the site and exits non-zero, naming
the page and the line, when

- ``>>>`` appears outside ``<pre>``/``<code>``, or block quotes are nested (what ``>>>`` lines
  become when Markdown reads them);
- a Sphinx role (``:func:``, ``:class:``, ``:math:`` ...) or a directive (``.. math::``) appears
  in the text, outside code;
- TeX is left in a maths element (``\\(...\\)`` not turned into MathML), or a cross-reference
  was left unresolved (an ``<autoref>`` tag);
- a page whose docstrings have examples has no code block with ``>>>``.

It prints, per page, the code blocks, the cross-reference links, the references left as plain
code (their target is not rendered on the site) and the formulas.

Usage: ``mkdocs build --strict --site-dir SITE && python docs/check_site.py SITE``.
"""

from __future__ import annotations

import functools
import pathlib
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const|math|ref|doc):")
DIRECTIVE = re.compile(r"\.\. [a-z-]+::")
RAW_TEX = re.compile(r"\\(?:[(\[]|[A-Za-z]{2,})")  # \( \[ \frac: TeX that was not rendered
IDENTIFIER = re.compile(r"^::: (\S+)[^\n]*(?P<options>(?:\n[ \t]+\S[^\n]*)*)", re.MULTILINE)
FORMULA = re.compile(r"\.\. math::|:math:`")
MEMBERS = re.compile(r"^\s*members:\s*(?P<list>\[[^\]]*\]|false)", re.MULTILINE)
DOTTED = re.compile(r"[A-Za-z_][\w.]*")


@dataclass
class PageReport:
    """What one page contains, and what is wrong with it (``(line, message)`` pairs)."""

    code_blocks: int = 0
    example_blocks: int = 0  # code blocks with a >>> line
    links: int = 0
    plain_refs: int = 0
    maths: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.report = PageReport()
        self.code_depth = 0  # inside <pre> or <code>
        self.quote_depth = 0
        self.math_depth = 0
        self.pre_text: list[str] = []
        self.skip = False  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        title = attributes.get("title") or ""
        line = self.getpos()[0]
        if tag in ("script", "style"):
            self.skip = True
        if tag == "pre":
            self.report.code_blocks += 1
            self.pre_text = []
        if tag in ("pre", "code"):
            self.code_depth += 1
        elif tag == "blockquote":
            self.quote_depth += 1
            if self.quote_depth == 2:
                self.report.problems.append(
                    (line, "nested block quotes: a >>> example rendered as quotes, not code")
                )
        elif tag == "math":
            self.math_depth += 1
            self.report.maths += 1
        elif tag == "a" and "autorefs" in (attributes.get("class") or "").split():
            self.report.links += 1
        elif tag == "span" and not self.code_depth and DOTTED.fullmatch(title):
            self.report.plain_refs += 1  # a reference left as code: its target is not rendered
        elif tag == "autoref":
            self.report.problems.append((line, f"unresolved cross-reference {attributes}"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = False
        if tag in ("pre", "code"):
            self.code_depth = max(0, self.code_depth - 1)
            if tag == "pre" and any(">>>" in text for text in self.pre_text):
                self.report.example_blocks += 1
        elif tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
        elif tag == "math":
            self.math_depth = max(0, self.math_depth - 1)

    def handle_data(self, data: str) -> None:
        if self.code_depth:
            self.pre_text.append(data)
        if self.code_depth or self.skip:
            return
        found = [(m.start(), ">>> outside a code block") for m in re.finditer(">>>", data)]
        found += [(m.start(), f"raw Sphinx role {m[0]}") for m in ROLE.finditer(data)]
        found += [(m.start(), f"raw directive {m[0]}") for m in DIRECTIVE.finditer(data)]
        if not self.math_depth:
            found += [(m.start(), f"raw TeX {m[0]}: no MathML") for m in RAW_TEX.finditer(data)]
        line = self.getpos()[0]
        for start, message in sorted(found):
            self.report.problems.append((line + data[:start].count("\n"), message))


def scan_page(html: str, examples: int = 0, formulas: int = 0) -> PageReport:
    """What one built page contains and what is wrong with it.

    Args:
      html: the page's HTML.
      examples: how many docstrings rendered on the page have ``>>>`` examples: the page needs
        at least as many code blocks with ``>>>``.
      formulas: how many formulas (``.. math::``, ``:math:``) those docstrings have: the page
        needs at least as many MathML formulas.

    Returns:
      The page's counts and problems (empty when the page renders).

    Example:
      >>> scan_page("<blockquote><blockquote><p>x = 1</p></blockquote></blockquote>").problems
      [(1, 'nested block quotes: a >>> example rendered as quotes, not code')]
      >>> scan_page("<pre><code>&gt;&gt;&gt; x = 1</code></pre>", examples=1).problems
      []
    """
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    report = scanner.report
    if report.example_blocks < examples:
        report.problems.append(
            (1, f"{examples} docstrings with >>> examples, {report.example_blocks} code blocks")
        )
    if report.maths < formulas:
        report.problems.append((1, f"{formulas} formulas in the docstrings, {report.maths} MathML"))
    return report


@functools.cache
def _package(name: str) -> Any:
    import griffe

    return griffe.load(name, search_paths=[str(pathlib.Path(__file__).resolve().parent.parent)])


def _docstrings(identifier: str, options: str) -> list[str]:
    """The docstrings a ``::: identifier`` block renders (its ``options``: the lines under it).

    The object's own and, unless ``members: false``, its public members' (only those named where
    ``members: [...]`` lists them), recursively; aliases only where named.
    """
    package, _, path = identifier.partition(".")
    obj = _package(package)[path] if path else _package(package)
    found = [obj.docstring]
    members = MEMBERS.search(options)
    if members is None or members["list"] != "false":
        names = None if members is None else set(re.findall(r"\w+", members["list"]))
        stack = [m for m in obj.members.values() if names is None or m.name in names]
        while stack:
            member = stack.pop()
            if member.name.startswith("_") or (member.is_alias and names is None):
                continue
            found.append(member.docstring)
            stack.extend(member.members.values())
    return [doc.value for doc in found if doc is not None]


def expected_content(docs_dir: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Per API page (``api/NAME``): its docstrings with ``>>>`` examples, and their formulas."""
    sys.path.insert(0, str(docs_dir))
    import hooks  # docs/hooks.py: the methods page's blocks come from the registry

    result = {}
    for path in sorted((docs_dir / "api").glob("*.md")):
        markdown = path.read_text(encoding="utf-8")
        if "<!-- methods-api -->" in markdown:
            elsewhere = hooks.rendered_elsewhere(str(docs_dir), path.name)
            markdown = markdown.replace("<!-- methods-api -->", hooks.methods_api(elsewhere))
        docs = [d for m in IDENTIFIER.finditer(markdown) for d in _docstrings(m[1], m["options"])]
        examples = sum(">>>" in doc for doc in docs)
        formulas = sum(len(FORMULA.findall(doc)) for doc in docs)
        result[f"api/{path.stem}"] = (examples, formulas)
    return result


def check_site(site_dir: pathlib.Path, docs_dir: pathlib.Path) -> int:
    """Scans every built API page; prints the counts and the problems; the number of problems."""
    expected = expected_content(docs_dir)
    problems = 0
    print(f"{'page':<14}{'code':>6}{'>>>':>10}{'links':>7}{'plain':>7}{'maths':>10}")
    for page, (examples, formulas) in expected.items():
        html_path = site_dir / page / "index.html"
        if not html_path.is_file():
            print(f"{html_path}: not built", file=sys.stderr)
            problems += 1
            continue
        report = scan_page(html_path.read_text(encoding="utf-8"), examples, formulas)
        print(
            f"{page:<14}{report.code_blocks:>6}{f'{report.example_blocks}/{examples}':>10}"
            f"{report.links:>7}{report.plain_refs:>7}{f'{report.maths}/{formulas}':>10}"
        )
        for line, message in report.problems:
            print(f"{html_path}:{line}: {message}", file=sys.stderr)
        problems += len(report.problems)
    print(f"[check_site] {problems} problem(s) in {len(expected)} API pages")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/check_site.py SITE (after mkdocs build --site-dir SITE)")
    root = pathlib.Path(__file__).resolve().parent
    sys.exit(1 if check_site(pathlib.Path(sys.argv[1]), root) else 0)
