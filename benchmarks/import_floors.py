"""How deep a package's imports go: the longest chain of its modules importing each other, and,
given its layers, how many layers deep it is, which imports go upward and which modules import
each other in a circle.

Usage::

  python benchmarks/import_floors.py autoscale_jax autoscale_jax.bench \\
      --layers datasets running experiments reporting cli

Every ``import`` / ``from ... import`` of the package's own modules counts, at any depth in a
file (also inside functions and ``TYPE_CHECKING`` blocks): a module depends on what it names.
``from pkg import name`` counts the submodule ``pkg.name`` when there is one, else ``pkg``.

Floors:
- **module chain**: the longest path ``a -> b -> c ...`` where each module imports the next
  (the package itself excluded), printed with the eight deepest modules;
- **layers** (with ``--layers``): a module's layer is its first sub-package under the package
  (``autoscale_jax.bench.running.chunk`` is in ``running``); a top-level module is in the last
  layer (the command line). Listed lowest first: a module may import its own layer and those
  listed before it. The layer depth is the longest chain of layers that import each other.

Exit status 1 when an import goes to a later layer, when modules import each other in a circle,
or when the layer depth exceeds ``--max-layers``; 0 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import functools
import pathlib
import sys


def module_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every ``.py`` file under the package folder ``root``."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    return files


def imports_of(name: str, files: dict[str, pathlib.Path], package: str) -> set[str]:
    """The modules of ``package`` (itself excluded) that module ``name`` imports."""
    path = files[name]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the module's package
                parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in files else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in files)
    return {m for m in found if m in files and m.startswith(package + ".") and m != name}


def longest_chain(graph: dict[str, set[str]]) -> tuple[dict[str, int], list[str]]:
    """Each node's depth (1 + the deepest node it imports; cycles broken where met) and the
    longest chain."""

    @functools.cache
    def depth(node: str, stack: frozenset[str] = frozenset()) -> int:
        below = [depth(d, stack | {node}) for d in graph[node] if d not in stack | {node}]
        return 1 + max(below, default=0)

    depths = {node: depth(node) for node in graph}
    node = max(graph, key=lambda n: (depths[n], n), default=None)
    chain = []
    while node is not None:
        chain.append(node)
        seen = set(chain)
        node = max(
            (d for d in graph[node] if d not in seen), key=lambda d: (depths[d], d), default=None
        )
    return depths, chain


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more modules that import each other in a circle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for d in graph[node]:
            if d not in index:
                visit(d)
                low[node] = min(low[node], low[d])
            elif d in stack:
                low[node] = min(low[node], index[d])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def layer_of(module: str, package: str, layers: list[str]) -> str:
    """The module's first sub-package under ``package`` if it is a layer, else the last layer."""
    first = module[len(package) + 1 :].split(".")[0]
    return first if first in layers else layers[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the top package's folder, e.g. autoscale_jax")
    parser.add_argument("package", help="the package measured, e.g. autoscale_jax.bench")
    parser.add_argument("--layers", nargs="*", default=None, help="lowest first")
    parser.add_argument("--max-layers", type=int, default=None)
    args = parser.parse_args(argv)
    files = module_files(pathlib.Path(args.root))
    modules = [m for m in files if m.startswith(args.package + ".")]
    graph = {m: imports_of(m, files, args.package) for m in modules}
    depths, chain = longest_chain(graph)
    for module in sorted(modules, key=lambda m: (-depths[m], m))[:8]:
        print(depths[module], module)
    print(f"module chain: {len(chain)} modules: {' -> '.join(chain)}")
    failed = False
    circles = cycles(graph)
    for group in circles:
        print("circle:", " <-> ".join(group))
    failed |= bool(circles)
    if args.layers:
        rank = {layer: i for i, layer in enumerate(args.layers)}
        layer_graph: dict[str, set[str]] = {layer: set() for layer in args.layers}
        for module, imported in sorted(graph.items()):
            mine = layer_of(module, args.package, args.layers)
            for other in sorted(imported):
                theirs = layer_of(other, args.package, args.layers)
                if rank[theirs] > rank[mine]:
                    print(f"upward import: {module} ({mine}) imports {other} ({theirs})")
                    failed = True
                elif theirs != mine:
                    layer_graph[mine].add(theirs)
        _, layer_chain = longest_chain(layer_graph)
        print(f"layers: {len(layer_chain)} deep: {' -> '.join(layer_chain)}")
        if args.max_layers is not None and len(layer_chain) > args.max_layers:
            print(f"more than {args.max_layers} layers")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
