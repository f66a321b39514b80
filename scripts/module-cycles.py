#!/usr/bin/env python3
"""The crate's top-level modules and what each names (`crate::x`), outside
unit tests, and any cycle between them: ARCHITECTURE.md says there is none.

    python3 scripts/module-cycles.py      # exits 1 on a cycle
"""
import collections
import os
import re
import sys

root = os.path.join(os.path.dirname(__file__), '..', 'src')
graph = collections.defaultdict(set)
for dirpath, _, files in os.walk(root):
    for name in files:
        if not name.endswith('.rs') or name.endswith('_tests.rs'):
            continue
        path = os.path.join(dirpath, name)
        top = os.path.relpath(path, root).split(os.sep)[0].removesuffix('.rs')
        if top in ('main', 'lib'):
            continue
        text = open(path).read()
        text = text.split('#[cfg(test)]')[0]
        for used in re.findall(r'crate::([a-z_]+)', text):
            if used != top:
                graph[top].add(used)
for module in sorted(graph):
    print(f"{module} -> {' '.join(sorted(graph[module]))}")
state, stack, cycles = {}, [], []


def visit(u):
    state[u] = 1
    stack.append(u)
    for v in sorted(graph.get(u, ())):
        if state.get(v) == 1:
            cycles.append(stack[stack.index(v):] + [v])
        elif v not in state:
            visit(v)
    stack.pop()
    state[u] = 2


for u in sorted(graph):
    if u not in state:
        visit(u)
for c in cycles:
    print('cycle:', ' -> '.join(c))
sys.exit(1 if cycles else 0)
