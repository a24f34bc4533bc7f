"""MkDocs hook: the data cards of docs/datasets.md, generated from the dataset registry.

``<!-- datasets-table -->`` in a page becomes one table of every dataset that
``autoscale_jax.bench.datasets`` discovers (loader, benchmarks, what it needs);
``<!-- dataset-cards -->`` becomes one section per dataset: its module docstring (the data card,
its first line the heading) and a generated line with the loader, the benchmarks and the
install step. A dataset module added to the package appears without editing the docs.
"""

from __future__ import annotations

from typing import Any


def _needs(info: Any) -> str:
    what = [f"`{p}`" for p in info.packages] + ([f"`{info.data_dir}`"] if info.data_dir else [])
    return f"{', '.join(what)}: `{info.install}`" if what else "nothing beyond the `bench` extra"


def _title(info: Any) -> str:
    return info.card.splitlines()[0].strip()


def datasets_table() -> str:
    """One markdown row per discovered dataset: its card's title, loader, benchmarks, needs."""
    from autoscale_jax.bench import datasets

    rows = ["| dataset | loader | benchmarks | needs |", "|---|---|---|---|"]
    for name, info in datasets.DATASETS.items():
        benchmarks = ", ".join(f"`{b.name}`" for b in info.benchmarks) or "—"
        rows.append(f"| {_title(info)} | `{name}` | {benchmarks} | {_needs(info)} |")
    return "\n".join(rows)


def dataset_cards() -> str:
    """Every discovered dataset's card as a ``##`` section, in registry order."""
    from autoscale_jax.bench import datasets

    sections = []
    for name, info in datasets.DATASETS.items():
        _, _, body = info.card.partition("\n")
        module = info.loader.__module__.replace(".", "/") + ".py"
        benchmarks = ", ".join(f"`{b.name}`" for b in info.benchmarks) or "none"
        footer = (
            f'Loader `datasets.{name}` (`load("{name}")`, in `{module}`); benchmarks: '
            f"{benchmarks}; needs {_needs(info)}."
        )
        sections.append(f"## {_title(info)}\n\n{body.strip()}\n\n{footer}")
    return "\n\n".join(sections)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- datasets-table -->" in markdown:
        markdown = markdown.replace("<!-- datasets-table -->", datasets_table())
    if "<!-- dataset-cards -->" in markdown:
        markdown = markdown.replace("<!-- dataset-cards -->", dataset_cards())
    return markdown
