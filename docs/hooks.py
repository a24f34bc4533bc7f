"""MkDocs hooks: the methods table and the methods' API page, generated from the registry.

``<!-- methods-table -->`` in a page becomes one table of every registered method (family,
cost per step, reference with its arXiv link); ``<!-- methods-api -->`` becomes one
mkdocstrings block per method factory. Both are read from ``autoscale_jax.methods`` at build
time, so a method added to the registry appears without editing the docs.
"""

from __future__ import annotations

import re
from typing import Any

ARXIV = re.compile(r"arXiv (\d{4}\.\d{4,5})")

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


def methods_api() -> str:
    """One mkdocstrings block per registered method factory."""
    import autoscale_jax as asj

    blocks = []
    for name in asj.methods.available():
        factory = asj.methods.info(name).factory
        blocks.append(f"::: {factory.__module__}.{factory.__name__}")
    return "\n\n".join(blocks)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    markdown = markdown.replace("<!-- methods-table -->", methods_table())
    return markdown.replace("<!-- methods-api -->", methods_api())
