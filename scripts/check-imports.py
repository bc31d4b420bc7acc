#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

Usage: check-imports.py [--crates] SRC_DIR [SRC_DIR ...]

With --crates, the workspace's crates are checked too (`cargo metadata --no-deps`): no crate
may depend on another that depends back on it, dev-dependencies included (a test kit that
needs the crate it tests is such a circle).

For each crate source folder, every `crate::...`, `super::...` and `self::...` path in the code
(comments and string literals left out, so doc links do not count) is resolved to the file of
the module it names, giving a graph of files. A file refers to its own child modules through
`mod` declarations; those are not edges, so a parent that only declares and re-exports its
children is no circle. Two kinds of circle are reported:

- between files: a.rs uses b.rs, which uses (through any chain) a.rs;
- between top-level modules: anything under `store` uses `zk` while something under `zk` uses
  `store` (the folders a newcomer reads as layers).

Exit status 1 with the circles listed, 0 when there are none.
"""

import re
import sys
from pathlib import Path


def strip(source: str) -> str:
    """The code without comments, string and char literals (kept as blanks)."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            i = n if j < 0 else j
        elif source.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', source[i:i + 8]) and (i == 0 or not source[i - 1].isalnum()):
            m = re.match(r'r(#*)"', source[i:])
            end = source.find('"' + m.group(1), i + len(m.group(0)))
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", source[i:i + 4]) or source.startswith("'\\u{", i):
            j = source.find("'", i + 2)
            i = j + 1
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(src: Path, file: Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


PATH = re.compile(r"\b(crate|super|self)((?:\s*::\s*(?:[A-Za-z_][A-Za-z0-9_]*|\{))+)")


def expand(prefix: list, text: str, pos: int, found: list) -> int:
    """Collects the paths of a `use` tree starting at text[pos] (after `prefix::`)."""
    while pos < len(text):
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*|\{|\*)", text[pos:])
        if not m:
            break
        tok = m.group(1)
        pos += m.end()
        if tok == "{":
            while True:
                pos = expand(prefix, text, pos, found)
                m2 = re.match(r"\s*(,|\})", text[pos:])
                if not m2:
                    return pos
                pos += m2.end()
                if m2.group(1) == "}":
                    return pos
                if re.match(r"\s*\}", text[pos:]):
                    pos += re.match(r"\s*\}", text[pos:]).end()
                    return pos
        elif tok == "*":
            found.append(list(prefix))
            return pos
        else:
            prefix = prefix + [tok]
            m2 = re.match(r"\s*::", text[pos:])
            if m2:
                pos += m2.end()
                continue
            found.append(prefix)
            return pos
    found.append(list(prefix))
    return pos


def references(module: tuple, is_mod_file: bool, code: str) -> list:
    """Absolute module paths (as lists of names) referred to in `code`."""
    refs = []
    for m in PATH.finditer(code):
        root = m.group(1)
        if root == "crate":
            base = []
        else:
            # `super` in a/b.rs (module a::b) is a; in a/mod.rs (module a) it is the crate root.
            here = list(module)
            base = here if root == "self" else here[:-1]
        found = []
        expand([], code, m.start(2) + len(re.match(r"\s*::", code[m.start(2):]).group(0)), found)
        for path in found:
            names = list(base)
            for name in path:
                if name == "super":
                    names = names[:-1]
                elif name != "self":
                    names.append(name)
            refs.append(names)
    return refs


def check(src: Path) -> list:
    files = {}
    for file in sorted(src.rglob("*.rs")):
        if file.name == "main.rs" or "bin" in file.relative_to(src).parts:
            continue  # binaries use the library by its crate name, from outside
        files[module_of(src, file)] = file
    graph = {m: set() for m in files}
    for module, file in files.items():
        code = strip(file.read_text())
        for names in references(module, file.name == "mod.rs", code):
            # The longest prefix that is a module file is where the item lives.
            target = None
            for k in range(len(names), -1, -1):
                if tuple(names[:k]) in files:
                    target = tuple(names[:k])
                    break
            if target is None or target == module or target == ():
                continue
            # A parent naming its own child (`mod x; pub use x::Y;`) is no dependency upward.
            if target[: len(module)] == module and files[module].name in ("mod.rs", "lib.rs"):
                if len(target) == len(module) + 1 and re.search(rf"\bpub\s+use\s+(self::)?{target[-1]}\b", code):
                    continue
            graph[module].add(target)
    problems = []
    for scc in sccs(graph):
        if len(scc) > 1:
            problems.append("files: " + " <-> ".join(str(files[m].relative_to(src)) for m in sorted(scc)))
    tops = {}
    for a, targets in graph.items():
        for b in targets:
            if a and b and a[0] != b[0]:
                tops.setdefault(a[0], set()).add(b[0])
    for scc in sccs({k: tops.get(k, set()) for k in {m[0] for m in files if m}}):
        if len(scc) > 1:
            edges = []
            for a in sorted(scc):
                for b in sorted(tops.get(a, ())):
                    if b in scc:
                        via = sorted(
                            f"{files[x].relative_to(src)} -> {files[y].relative_to(src)}"
                            for x, ys in graph.items()
                            for y in ys
                            if x and y and x[0] == a and y[0] == b
                        )
                        edges.append(f"{a} -> {b} ({via[0]}{', ...' if len(via) > 1 else ''})")
            problems.append("modules: " + "; ".join(edges))
    return problems


def sccs(graph: dict) -> list:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def crate_circles(metadata: dict) -> list:
    """Circles between the workspace's crates, dev-dependencies included."""
    names = {p["name"] for p in metadata["packages"]}
    graph = {p["name"]: {d["name"] for d in p["dependencies"] if d["name"] in names} for p in metadata["packages"]}
    return [" <-> ".join(sorted(c)) for c in sccs(graph) if len(c) > 1]


def main() -> int:
    failed = False
    args = sys.argv[1:]
    if args and args[0] == "--crates":
        args = args[1:]
        import json
        import subprocess

        out = subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"], capture_output=True, text=True, check=True
        ).stdout
        for circle in crate_circles(json.loads(out)):
            print(f"import circle: crates: {circle}")
            failed = True
    for arg in args:
        for problem in check(Path(arg)):
            print(f"{arg}: import circle: {problem}")
            failed = True
    if not failed:
        print(f"no import circles in {', '.join(sys.argv[1:])}".replace("--crates, ", "the workspace's crates, "))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
