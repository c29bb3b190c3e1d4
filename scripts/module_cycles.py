#!/usr/bin/env python3
"""Prints the import graph's cycles between the source files of one crate.

Usage: scripts/module_cycles.py crates/qlb-client/src [ALLOWED_A:ALLOWED_B ...]

An edge A -> B means file A names an item of file B: through `crate::`, `super::`, `self::`
or a child module's name, in code (comments are skipped; `super::` inside a file's trailing
`#[cfg(test)] mod tests` is the file itself). Cycles are the strongly connected components
with more than one file; pairs given as arguments (module paths, e.g. `builder:client`) are
allowed and leave them out. Exits 1 if any other cycle remains.
"""

import re
import sys
from pathlib import Path

IDENT_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*"


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts.pop()
    return tuple(parts)


def resolve(modules: set, start: tuple, path: list) -> tuple:
    """The deepest module file along `start` + `path`."""
    best = start
    current = list(start)
    for part in path:
        current.append(part)
        if tuple(current) in modules:
            best = tuple(current)
        else:
            break
    return best


def edges_of(src: Path, file: Path, modules: set) -> set:
    me = module_of(src, file)
    is_dir_module = file.name in ("mod.rs", "lib.rs", "main.rs")
    children = {m[-1] for m in modules if len(m) == len(me) + 1 and m[:-1] == me}
    parent = me if is_dir_module else me[:-1]
    found = set()
    in_tests = False
    for line in file.read_text().splitlines():
        code = line.split("//", 1)[0]
        if re.match(r"\s*mod tests\b", code):
            in_tests = True
        # `a::{b, c}` names module `a` at least.
        for kind, path in re.findall(r"\b(crate|super|self)::(" + IDENT_PATH + "|\{)", code):
            parts = [] if path == "{" else path.split("::")
            if kind == "crate":
                base = ()
            elif kind == "self":
                base = me
            else:
                # `super` of a file module is its folder's module; inside `mod tests` it is
                # the file itself.
                base = me if in_tests else parent
                while parts and parts[0] == "super":
                    parts.pop(0)
                    base = base[:-1]
            found.add(resolve(modules, base, parts))
        for child in children:
            for path in re.findall(r"(?<![:\w])" + child + r"::(" + IDENT_PATH + r"|\{)", code):
                parts = [] if path == "{" else path.split("::")
                found.add(resolve(modules, me + (child,), parts))
    found.discard(me)
    return found


def cycles(graph: dict) -> list:
    """Tarjan's strongly connected components with more than one node."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for next_node in graph.get(node, ()):
            if next_node not in index:
                visit(next_node)
                low[node] = min(low[node], low[next_node])
            elif next_node in on_stack:
                low[node] = min(low[node], index[next_node])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def main() -> int:
    src = Path(sys.argv[1])
    allowed = [set(tuple(p.split("::")) for p in pair.split(":")) for pair in sys.argv[2:]]
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f) for f in files}
    graph = {module_of(src, f): edges_of(src, f, modules) for f in files}
    name = lambda m: "::".join(m) or "crate"
    edge_count = sum(len(v) for v in graph.values())
    print(f"{len(files)} files, {edge_count} import edges between them")
    bad = [c for c in cycles(graph) if set(c) not in allowed]
    for component in cycles(graph):
        label = "allowed" if set(component) in allowed else "CYCLE"
        print(f"{label}: {' <-> '.join(name(m) for m in component)}")
    if not bad:
        print("no other cycle: the module graph is acyclic")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
