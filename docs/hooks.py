"""MkDocs hooks: the methods table and the methods' API page, generated from the registry.

``<!-- methods-table -->`` in a page becomes one table of every registered method (family,
cost per step, reference with its arXiv link); ``<!-- methods-api -->`` becomes one
mkdocstrings block per method factory. Both are read from ``autoscale_jax.methods`` at build
time, so a method added to the registry appears without editing the docs.

Maths (``\\(...\\)`` and ``\\[...\\]``, which ``pymdownx.arithmatex`` leaves as TeX in
``class="arithmatex"`` elements) becomes MathML here, at build time: browsers render it natively,
so the site ships no maths script and loads nothing from a CDN. TeX that the converter does not
know is a warning, i.e. a failed ``mkdocs build --strict``.
"""

from __future__ import annotations

import logging
import pathlib
import re
from collections.abc import Collection
from html import unescape
from typing import Any

ARXIV = re.compile(r"arXiv (\d{4}\.\d{4,5})")
IDENTIFIER = re.compile(r"^::: (\S+)", re.MULTILINE)
# arithmatex's generic output: <span class="arithmatex">\(x\)</span>, <div ...>\[x\]</div>
ARITHMATEX = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])\s*</(?P=tag)>",
    re.DOTALL,
)
# TeX the converter does not know, rewritten first: name -> TeX it knows.
TEX_MACROS = {r"\arg": r"\operatorname{arg}"}
UNKNOWN_TEX = re.compile(r">(\\[A-Za-z]+)<")
LOG = logging.getLogger("mkdocs.plugins.hooks")  # a warning fails mkdocs build --strict

FAMILY_COST = {
    "loss": "1 backward pass (weights from the K losses)",
    "gramian": "K VJPs, the K×K Gramian and a K-dimensional solve",
    "surgery": "K VJPs and the K×K Gramian (projections in Gramian space)",
    "elementwise": "K VJPs and O(K·P) element-wise work",
    "wrapper": "the wrapped method's",
}
EXTRA_COST = {
    "second_task_grads": " + K VJPs on a second batch",
    "validation_grads": " + 1 validation gradient",
    "representation_task_grads": " (or K VJPs w.r.t. a shared representation)",
}


def cost_per_step(info: Any) -> str:
    """What one step of the method costs beyond the forward pass."""
    if info.name == "autoscale":
        cost = "K VJPs + the K×K Gramian while estimating, then 1 backward pass"
    elif info.name == "freeze":
        cost = "the wrapped method's while estimating, then 1 backward pass"
    elif info.family == "scalarization":
        cost = "1 backward pass"
    else:
        cost = FAMILY_COST[info.family]
    return cost + "".join(EXTRA_COST.get(name, "") for name in info.extra_inputs)


def reference_cell(reference: str) -> str:
    """The reference with its arXiv id as a link."""
    return ARXIV.sub(
        lambda m: f"[arXiv {m.group(1)}](https://arxiv.org/abs/{m.group(1)})", reference
    ).replace("|", "\\|")


def methods_table() -> str:
    """One markdown table of every registered method, sorted by family then name."""
    import autoscale_jax as asj

    order = ("scalarization", "loss", "gramian", "surgery", "elementwise", "wrapper")
    infos = sorted(
        (asj.methods.info(name) for name in asj.methods.available()),
        key=lambda info: (order.index(info.family), info.name),
    )
    rows = [
        "| method | family | cost per step | needs | weights | reference |",
        "|---|---|---|---|---|---|",
    ]
    for info in infos:
        needs = ["losses"] if info.needs_losses else []
        needs += ["key"] if info.needs_key else []
        needs += [f"`{name}`" for name in info.extra_inputs]
        rows.append(
            f"| `{info.name}` | {info.family} | {cost_per_step(info)} | "
            f"{', '.join(needs) or '—'} | {info.weight_convention} | "
            f"{reference_cell(info.reference)} |"
        )
    return "\n".join(rows)


def rendered_elsewhere(docs_dir: str, page: str) -> set[str]:
    """The identifiers of the ``::: identifier`` blocks of the API pages other than ``page``."""
    return {
        identifier
        for path in pathlib.Path(docs_dir, "api").glob("*.md")
        if path.name != page
        for identifier in IDENTIFIER.findall(path.read_text(encoding="utf-8"))
    }


def methods_api(elsewhere: Collection[str] = ()) -> str:
    """One mkdocstrings block per registered method factory.

    A factory whose module (or itself) is rendered on another API page (``elsewhere``) gets a
    link there instead: one object rendered twice has two anchors, and a cross-reference to it
    would be ambiguous (a warning, so a failed ``--strict`` build).
    """
    import autoscale_jax as asj

    blocks = []
    for name in asj.methods.available():
        factory = asj.methods.info(name).factory
        path = f"{factory.__module__}.{factory.__name__}"
        if path in elsewhere or factory.__module__ in elsewhere:
            blocks.append(f"`{name}`: see [`{factory.__name__}`][{path}].")
        else:
            blocks.append(f"::: {path}")
    return "\n\n".join(blocks)


def tex_to_mathml(tex: str, display: str) -> str:
    """One TeX formula as MathML (``display``: ``"inline"`` or ``"block"``).

    Raises:
      ValueError: naming the formula and the command when the converter does not know a command
        (it would show the command as text).
    """
    from latex2mathml.converter import convert

    for name, replacement in TEX_MACROS.items():
        tex = re.sub(re.escape(name) + r"(?![A-Za-z])", replacement.replace("\\", "\\\\"), tex)
    mathml = convert(tex.strip(), display=display)
    if unknown := UNKNOWN_TEX.findall(mathml):
        raise ValueError(
            f"TeX command {', '.join(unknown)} in {tex!r} is not known to latex2mathml: "
            "add it to TEX_MACROS in docs/hooks.py"
        )
    return mathml


def render_maths(page_html: str) -> str:
    """Every arithmatex element of a page with its TeX as MathML (the element kept)."""

    def replace(match: re.Match[str]) -> str:
        inline = match["inline"] is not None
        tex = unescape(match["inline"] if inline else match["block"])
        mathml = tex_to_mathml(tex, "inline" if inline else "block")
        return f'<{match["tag"]} class="arithmatex">{mathml}</{match["tag"]}>'

    return ARITHMATEX.sub(replace, page_html)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    markdown = markdown.replace("<!-- methods-table -->", methods_table())
    if "<!-- methods-api -->" in markdown:
        elsewhere = rendered_elsewhere(config["docs_dir"], pathlib.PurePath(page.file.src_uri).name)
        markdown = markdown.replace("<!-- methods-api -->", methods_api(elsewhere))
    return markdown


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    try:
        return render_maths(html)
    except ValueError as error:
        LOG.warning("%s: %s", page.file.src_uri, error)
        return html
