"""Griffe extension: the package's Google docstrings, made renderable by mkdocstrings.

The docstrings are written for readers of the source and for doctest: ``Example:`` sections and
``>>>`` runs in prose, Sphinx roles (``:func:`x```, ``:class:`~a.b.C```, ...) and ``.. math::``
blocks. mkdocstrings' Google parser knows none of these: ``Example:`` becomes an admonition whose
``>>>`` lines render as nested block quotes, and the roles and directives stay as raw text. This
extension rewrites each docstring before it is parsed (the package sources stay as they are):

- an ``Example:`` section becomes ``Examples:`` (the section mkdocstrings renders as code), and
  a ``>>>`` run anywhere else becomes a fenced ``pycon`` code block;
- ``:func:`` / ``:class:`` / ``:mod:`` / ``:meth:`` / ``:attr:`` / ``:data:`` / ``:obj:`` /
  ``:exc:`` become optional cross-references to the object's canonical path, resolved like
  Sphinx does (the full path, else outwards from the docstring's object, else the unique object
  whose path ends with the name): a link where the target is rendered on the site, plain code
  where it is not (never a broken link);
- ``.. math::`` blocks and ``:math:`` roles become ``\\[...\\]`` and ``\\(...\\)``, which
  ``pymdownx.arithmatex`` keeps away from Markdown and ``docs/hooks.py`` turns into MathML.

Loaded by path from ``mkdocs.yml`` (``extensions: [docs/griffe_docstrings.py]``).
``docs/check_site.py`` fails the docs build where any of this does not render.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

try:
    from griffe import AliasResolutionError, CyclicAliasError, Extension
except ImportError:  # the docs extra is not installed: the text functions still import
    Extension = object  # type: ignore[assignment,misc]

XREF_ROLES = ("func", "class", "mod", "meth", "attr", "data", "obj", "exc")
ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<target>[^`]+)`")
MATH_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. math::\s*(?P<first>.*)$")
SECTION = re.compile(r"^(?P<title>\w[\w ]*):\s*$")
LIST_MARKER = re.compile(r"^(?P<indent>\s*)(?:\d+\.|[-*+])\s+\S")
EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
# Google sections of items ("name: description"): a block stays where it is written there.
ITEM_SECTIONS = {
    "args", "arguments", "params", "parameters", "keyword args", "keyword arguments",
    "other args", "other arguments", "other params", "other parameters", "raises",
    "exceptions", "returns", "yields", "receives", "warns", "warnings", "attributes",
    "functions", "methods", "classes", "modules",
}  # fmt: skip

Resolver = Callable[[str], "str | None"]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _convert_roles(line: str, resolve: Resolver) -> str:
    """One line's Sphinx roles as cross-references (``resolve``: name -> path or None)."""

    def replace(match: re.Match[str]) -> str:
        role, target = match["role"], match["target"]
        if role == "math":
            return f"\\({target}\\)"
        if role not in XREF_ROLES:
            return match[0]
        title = None
        if explicit := EXPLICIT_TITLE.match(target):
            title, target = explicit["title"], explicit["target"]
        name = target.lstrip("~").removesuffix("()")
        if title is None:
            title = name.rsplit(".", 1)[-1] if target.startswith("~") else name.lstrip(".")
        path = resolve(name) or name.lstrip(".")
        return f'<autoref identifier="{path}" optional>`{title}`</autoref>'

    return ROLE.sub(replace, line)


def _block_end(lines: list[str], start: int, examples: bool) -> int:
    """The line after the block at ``start``: a ``>>>`` run, or a directive's indented body."""
    indent = _indent(lines[start])
    end = start + 1
    if examples:  # the >>> run: its ... and output lines, up to a blank line
        while end < len(lines) and lines[end].strip() and _indent(lines[end]) >= indent:
            end += 1
        return end
    while end < len(lines):  # the lines indented under the directive, blank ones within
        if lines[end].strip():
            if _indent(lines[end]) <= indent:
                break
        elif _indent(next((x for x in lines[end:] if x.strip()), "")) <= indent:
            break
        end += 1
    return end


def _block(lines: list[str], start: int, end: int, column: int) -> list[str]:
    """The ``>>>`` run or ``.. math::`` directive ``lines[start:end]`` at ``column``.

    A run becomes a fenced ``pycon`` block, a directive a ``\\[...\\]`` block; either with a
    blank line before and after (a block of its own for Markdown).
    """
    pad = " " * column
    if directive := MATH_DIRECTIVE.match(lines[start]):
        body = [directive["first"], *lines[start + 1 : end]]
        block = [pad + "\\[", *(pad + "  " + x.strip() for x in body if x.strip()), pad + "\\]"]
    else:
        indent = _indent(lines[start])
        block = [pad + "```pycon", *(pad + x[indent:] for x in lines[start:end]), pad + "```"]
    return ["", *block, ""]


def _body(lines: list[str], resolve: Resolver, examples: bool, in_place: bool) -> list[str]:
    """Prose lines (a docstring's text or a section's dedented body) as mkdocstrings renders them.

    A list item's continuation lines move to 4 columns (Python-Markdown's list indentation); a
    block goes to the column of its container (the list item's content, else column 0), or
    stays where it is written (``in_place``, in a section of items). ``examples``: the ``>>>``
    runs stay as they are (mkdocstrings renders an Examples section's runs as code).
    """
    out: list[str] = []
    items: list[tuple[int, int, int, int]] = []  # open items: marker indent, shift, column, start
    i = 0
    while i < len(lines):
        line, indent = lines[i], _indent(lines[i])
        if not in_place and line.strip():
            while items and indent <= items[-1][0]:
                start = items.pop()[3]
                if LIST_MARKER.match(line) and "" in out[start:] and out[-1]:
                    out.append("")  # the next item of a list whose item has paragraphs
        shift = items[-1][1] if items else 0
        column = indent if in_place else (items[-1][2] if items else 0)
        if line.strip().startswith(">>>") or MATH_DIRECTIVE.match(line):
            end = _block_end(lines, i, examples=line.strip().startswith(">>>"))
            if examples and line.strip().startswith(">>>"):
                out.extend(lines[i:end])
            else:
                out.extend(_block(lines, i, end, column))
            i = end
            continue
        if not in_place and (marker := LIST_MARKER.match(line)):
            column = indent + shift + 4  # where the item's content goes: 4 columns in
            items.append((indent, column - (marker.end() - 1), column, len(out)))
        out.append(" " * shift + _convert_roles(line, resolve) if line.strip() else "")
        i += 1
    return out


def normalise(docstring: str, resolve: Resolver = lambda name: None) -> str:
    """A Google docstring with Sphinx roles, maths and ``>>>`` runs, as mkdocstrings renders it.

    Args:
      docstring: the cleaned docstring (as ``inspect.cleandoc`` gives it).
      resolve: a name as written in a role (``x``, ``a.b.C``, ``.x``) -> the path of the object
        to link to, or ``None`` to link to the name as written.

    Returns:
      The docstring with ``Examples:`` sections, fenced ``>>>`` runs outside them,
      cross-references, and ``\\(...\\)`` / ``\\[...\\]`` maths.

    Example:
      >>> print(normalise("See :func:`~a.b.f`, :math:`x^2`.", resolve=lambda name: "a.b.f"))
      See <autoref identifier="a.b.f" optional>`f`</autoref>, \\(x^2\\).
    """
    lines = docstring.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        end = i  # the top-level text up to the next section
        while end < len(lines) and not _section_at(lines, end):
            end += 1
        out.extend(_body(lines[i:end], resolve, examples=False, in_place=False))
        if end == len(lines):
            break
        header = SECTION.match(lines[end])
        assert header is not None
        title = "Examples" if header["title"] == "Example" else header["title"]
        i = end + 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > 0):
            i += 1
        body = lines[end + 1 : i]
        indent = min(_indent(x) for x in body if x.strip())
        body = _body(
            [x[indent:] for x in body],
            resolve,
            examples=title == "Examples",
            in_place=title.lower() in ITEM_SECTIONS,
        )
        out.extend([f"{title}:", *(" " * indent + x if x else "" for x in body)])
    return "\n".join(out)


def _section_at(lines: list[str], i: int) -> bool:
    """Whether ``lines[i]`` opens a Google section: ``Title:`` over an indented body."""
    following = next((x for x in lines[i + 1 :] if x.strip()), "")
    return SECTION.match(lines[i]) is not None and _indent(following) > 0


def _objects(obj: Any) -> Iterator[Any]:
    """The object and every object defined under it (not the aliases)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _canonical(obj: Any) -> str:
    if not obj.is_alias:
        return str(obj.path)
    try:
        return str(obj.final_target.path)
    except (AliasResolutionError, CyclicAliasError):
        return str(obj.target_path)


class SphinxToMarkdown(Extension):  # type: ignore[misc]
    """Rewrites every docstring of a loaded package with :func:`normalise`."""

    def on_package(self, *, pkg: Any, loader: Any, **kwargs: Any) -> None:
        objects = list(_objects(pkg))
        by_suffix: dict[str, list[str]] = {}
        for obj in objects:
            parts = str(obj.path).split(".")
            for n in range(1, len(parts)):
                by_suffix.setdefault(".".join(parts[-n:]), []).append(str(obj.path))
        for obj in objects:
            if obj.docstring is not None:
                resolver = self._resolver(obj, loader, by_suffix)
                obj.docstring.value = normalise(obj.docstring.value, resolver)

    @staticmethod
    def _resolver(obj: Any, loader: Any, by_suffix: dict[str, list[str]]) -> Resolver:
        def lookup(scope: Any, name: str) -> str | None:
            try:
                return _canonical(scope[name])
            except (KeyError, ValueError, AliasResolutionError, CyclicAliasError):
                return None

        def resolve(name: str) -> str | None:
            name = name.lstrip(".")
            try:  # a full path
                return _canonical(loader.modules_collection[name])
            except (KeyError, ValueError, AliasResolutionError, CyclicAliasError):
                pass
            scope = obj if (obj.is_module or obj.is_class) else obj.parent
            while scope is not None:  # outwards from the docstring's object
                if (path := lookup(scope, name)) is not None:
                    return path
                scope = scope.parent
            candidates = by_suffix.get(name, [])
            return candidates[0] if len(candidates) == 1 else None

        return resolve
