"""docs/datasets.md shows every discovered dataset's card (docs/dataset_cards.py, an MkDocs
hook): the table row and the section come from the registry, with no line per dataset in the
page."""

import importlib.util
import pathlib

from autoscale_jax.bench import datasets

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_dataset_cards", DOCS / "dataset_cards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_shows_a_row_and_a_card_per_discovered_dataset():
    hook = _hook()
    page = (DOCS / "datasets.md").read_text(encoding="utf-8")
    assert "<!-- datasets-table -->" in page and "<!-- dataset-cards -->" in page
    rendered = hook.on_page_markdown(page, None, None, None)
    assert "<!--" not in rendered
    for name, info in datasets.DATASETS.items():
        title = info.card.splitlines()[0]
        assert f"\n## {title}\n" in rendered, name
        assert f"| {title} | `{name}` |" in rendered, name
        assert f'Loader `datasets.{name}` (`load("{name}")`' in rendered, name
        for benchmark in info.benchmarks:
            assert f"`{benchmark.name}`" in rendered, (name, benchmark.name)
    # The cards follow the registry's order, one section each.
    headings = [line[3:] for line in rendered.splitlines() if line.startswith("## ")]
    titles = [info.card.splitlines()[0] for info in datasets.DATASETS.values()]
    assert headings == ["Installing the data", *titles]
