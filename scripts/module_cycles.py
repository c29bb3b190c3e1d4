#!/usr/bin/env python3
"""Import cycles between a crate's modules, read from `crate::` and `super::` paths.

Usage: scripts/module_cycles.py crates/qlb-lb/src [ALLOWED_A:ALLOWED_B ...]

Every file is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`). An edge A -> B is a path in A's
code (a `use` line or inline, comments excluded; `crate::`, `super::` or a child's name) that
names B or an item in it: a child that imports from its parent and a parent that imports from
that child make a cycle too. A module's own inline `mod tests` counts as the module. Reports the cycles among files and among top-level
modules; exits 1 if there is one. Pairs given after the folder (module paths, such as
`builder:client`, a builder and its product) are allowed to import each other.
"""

import os
import re
import sys


def modules(root):
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            found[tuple(rel)] = os.path.join(dirpath, name)
    return found


def code(path):
    """The file's text without comments and string literals' contents."""
    text = open(path).read()
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"\bpub\((?:crate|super|in [^)]*)\)", "pub", text)
    text = re.sub(r'r#"(?:.|\n)*?"#', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def paths(text, children):
    """Every path starting at `crate`, `super` or a child module, `use` groups expanded."""
    out = []
    roots = "|".join(["crate", "super"] + sorted(children))
    for match in re.finditer(r"(?<!::)\b(%s)((?:::\w+)*)(::\{)?" % roots, text):
        if match.group(1) in children and not match.group(2) and not match.group(3):
            continue  # a name like the module's, not a path into it
        head = [match.group(1)] + [p for p in match.group(2).split("::") if p]
        if match.group(3):
            depth, start, i = 1, match.end(), match.end()
            while depth and i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            for part in re.split(r"[,{}\s]+", text[start : i - 1]):
                if part and part != "self":
                    out.append(head + [p for p in part.split("::") if p])
            out.append(head)
        else:
            out.append(head)
    return out


def resolve(module, path, known):
    if path[0] == "crate":
        absolute, rest = [], path[1:]
    elif path[0] != "super":
        absolute, rest = list(module), path
    else:
        absolute, rest = list(module), path
        while rest and rest[0] == "super":
            absolute, rest = absolute[:-1], rest[1:]
    target = tuple(absolute)
    for part in rest:
        if target + (part,) in known:
            target += (part,)
        else:
            break
    return target


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def main(root, allowed=()):
    known = modules(root)
    files, tops = {}, {}
    for module, path in known.items():
        children = {m[-1] for m in known if len(m) == len(module) + 1 and m[:-1] == module}
        text = code(path)
        # An inline module (`mod tests { .. }`, last in the file): its `super` is this file.
        inline = re.search(r"\bmod\s+\w+\s*\{", text)
        parts = [(module, text)]
        if inline:
            parts = [(module, text[: inline.start()]), (module + ("",), text[inline.start() :])]
        for inner, part in parts:
            for p in paths(part, children):
                if p[0] not in ("crate", "super"):
                    inner_path = p  # a child of the file's module
                    target = resolve(module, inner_path, known)
                else:
                    target = resolve(inner, p, known)
                if target and target != module and target in known:
                    files.setdefault(module, set()).add(target)
                if module and target and module[0] != target[0]:
                    tops.setdefault(module[:1], set()).add(target[:1])
    name = lambda m: "::".join(m) or "crate"
    print(f"{len(known)} modules, {sum(map(len, files.values()))} edges between files")
    for top, targets in sorted(tops.items()):
        print(f"  {name(top)} -> {', '.join(sorted(map(name, targets)))}")
    allowed = [sorted(pair.split(":")) for pair in allowed]
    found = [("files", c) for c in cycles(files)] + [("top-level modules", c) for c in cycles(tops)]
    bad = [(kind, c) for kind, c in found if sorted(map(name, c)) not in allowed]
    for kind, component in found:
        if (kind, component) not in bad:
            print(f"allowed: {', '.join(map(name, component))}")
    for kind, component in bad:
        print(f"cycle among {kind}: {', '.join(map(name, component))}")
    if not bad:
        print("no cycles")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "src", sys.argv[2:]))
