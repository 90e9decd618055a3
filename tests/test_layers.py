"""The library's imports point down: no import circle, imports inside functions included,
and no module imports one on a higher floor (docs/training.md, "Layers"); and no source file
of the tree is over 350 lines.

The graph is read from the source with `ast`: every `import x` and `from x import y`
anywhere in a module (top level, functions, `if TYPE_CHECKING:` blocks), where `y` may be
a submodule. A package's own `__init__` runs before any of its submodules, but that is
Python's doing, not an import the code asks for, so it is no edge here.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "synthesizer_jax"

# Floors, lowest first; a module may import its own floor (without a circle) or lower ones.
# A subpackage's entry covers its modules; a module not listed fails the test until placed.
FLOORS = {
    # 1. Foundations: file paths, argument checks, checksums, numerics helpers, metrics.
    "synthesizer_jax.paths": 1, "synthesizer_jax.checks": 1, "synthesizer_jax.checksums": 1,
    "synthesizer_jax.diskfull": 1, "synthesizer_jax.domains": 1,
    "synthesizer_jax.preemption": 1, "synthesizer_jax.metrics": 1,
    "synthesizer_jax.references": 1, "synthesizer_jax.agreement": 1,
    "synthesizer_jax.layers": 1, "synthesizer_jax.version": 1,
    # 2. The attention kinds, and the data: tasks, corpora, vocabularies, layouts, pipelines.
    "synthesizer_jax.attention": 2, "synthesizer_jax.data": 2,
    # 3. Configs, meshes, optimizers, checkpoints and workdirs.
    "synthesizer_jax.config": 3, "synthesizer_jax.sharding": 3, "synthesizer_jax.optim": 3,
    "synthesizer_jax.checkpointing": 3, "synthesizer_jax.finetune": 3,
    "synthesizer_jax.workdir_lock": 3, "synthesizer_jax.logging_utils": 3,
    # 4. Models and what they output: transformers, decoding, text, predictions, plots.
    "synthesizer_jax.transformer": 4, "synthesizer_jax.decode_cache": 4,
    "synthesizer_jax.decoding": 4, "synthesizer_jax.beam_search": 4, "synthesizer_jax.text": 4,
    "synthesizer_jax.predictions": 4, "synthesizer_jax.viz": 4, "synthesizer_jax.viz_panels": 4,
    "synthesizer_jax.viz_compare": 4,
    # 5. Model shapes (model + data layout + loss), the jitted steps, checkpoint loading.
    "synthesizer_jax.shapes": 5, "synthesizer_jax.steps": 5, "synthesizer_jax.loading": 5,
    # 6. A run: its set-up, evaluation, the training loop.
    "synthesizer_jax.run": 6, "synthesizer_jax.evaluation": 6, "synthesizer_jax.loop": 6,
    # 7. The package's front door (`sj.*`), the demo and the pre-flight smoke run.
    "synthesizer_jax": 7, "synthesizer_jax.demo": 7, "synthesizer_jax.smoke": 7,
    "synthesizer_jax.smoke_checks": 7,
}
# Imports that climb and wait on another change, with the reason. Keep this empty.
KNOWN_CLIMBS: set[tuple[str, str]] = set()


def modules(root: str = REPO) -> dict[str, str]:
  """{dotted module name: file} of every .py file of the package."""
  found = {}
  for folder, _, files in os.walk(os.path.join(root, PACKAGE)):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        found[name.removesuffix(".__init__")] = path
  return found


def import_graph(root: str = REPO) -> dict[str, dict[str, int]]:
  """{module: {imported package module: line of the first such import}}."""
  mods = modules(root)

  def known(name: str) -> str | None:  # a package module, or the package holding the name
    while name and name not in mods:
      name = name.rpartition(".")[0]
    return name or None

  graph = {}
  for name, path in mods.items():
    edges: dict[str, int] = {}
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from .x import y
          parts = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(parts + ([node.module] if node.module else []))
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                   for a in node.names]
      for target in map(known, targets):
        if target and target != name:
          edges.setdefault(target, node.lineno)
    graph[name] = edges
  return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
  """One circle (a -> b -> ... -> a) through each strongly connected group of modules."""
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def visit(v):  # Tarjan's algorithm
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = set()
      while not group or w != v:
        w = stack.pop()
        on_stack.discard(w)
        group.add(w)
      if len(group) > 1:
        groups.append(group)

  for v in sorted(graph):
    if v not in index:
      visit(v)
  found = []
  for group in groups:  # a shortest way back to the group's first module
    start = min(group)
    paths, seen = [[start]], {start}
    while paths:
      path = paths.pop(0)
      nxt = [w for w in sorted(graph[path[-1]]) if w in group]
      if start in nxt:
        found.append(path + [start])
        break
      for w in nxt:
        if w not in seen:
          seen.add(w)
          paths.append(path + [w])
  return found


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
  return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + \
      f" -> {cycle[-1]}"


def floor(name: str) -> int | None:
  keys = [k for k in FLOORS if name == k or (k != PACKAGE and name.startswith(k + "."))]
  return FLOORS[max(keys, key=len)] if keys else None


def test_the_library_has_no_import_circle():
  graph = import_graph()
  assert "synthesizer_jax.shapes" in graph and graph["synthesizer_jax.run"], "no graph read"
  found = cycles(graph)
  assert not found, "import circles:\n  " + "\n  ".join(describe(c, graph) for c in found)


def test_every_import_points_down():
  graph = import_graph()
  unplaced = sorted(m for m in graph if floor(m) is None)
  assert not unplaced, f"place these modules on a floor in tests/test_layers.py: {unplaced}"
  climbs = [f"{a} (floor {floor(a)}, line {line}) imports {b} (floor {floor(b)})"
            for a, edges in sorted(graph.items()) for b, line in edges.items()
            if floor(b) > floor(a) and (a, b) not in KNOWN_CLIMBS]
  assert not climbs, "imports that climb:\n  " + "\n  ".join(climbs)


def _write(root, files):
  for name, text in files.items():
    path = os.path.join(root, PACKAGE, *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write(text)


@pytest.mark.parametrize("back", [
    "import synthesizer_jax.a",                            # top level
    "def f():\n  from synthesizer_jax import a",             # in a function, a submodule
    "from . import a",                                      # relative
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n  from synthesizer_jax.a import X",
])
def test_the_checker_finds_a_circle_however_it_is_imported(tmp_path, back):
  _write(str(tmp_path), {"__init__.py": "", "a.py": "from synthesizer_jax.b import thing\n",
                         "b.py": f"{back}\nthing = 1\n", "c.py": "import synthesizer_jax.b\n"})
  graph = import_graph(str(tmp_path))
  found = cycles(graph)
  assert found == [["synthesizer_jax.a", "synthesizer_jax.b", "synthesizer_jax.a"]], graph
  assert describe(found[0], graph).startswith("synthesizer_jax.a (line 1) -> synthesizer_jax.b")
  _write(str(tmp_path), {"b.py": "thing = 1\n"})
  assert not cycles(import_graph(str(tmp_path)))


MAX_LINES = 350  # the house rule (../shared/STYLE.md): split a module where a reader would look


def test_no_source_file_is_over_350_lines():
  roots = [os.path.join(REPO, d) for d in (PACKAGE, "experiments", "benchmarks", "configs",
                                           "tests")]
  files = [os.path.join(REPO, f) for f in ("train.py", "eval.py")]
  files += [os.path.join(d, f) for root in roots for d, _, names in os.walk(root)
            for f in names if f.endswith(".py")]
  assert len(files) > 100, "the tree was not found"
  long = {}
  for path in files:
    with open(path) as f:
      n = sum(1 for _ in f)
    if n > MAX_LINES:
      long[os.path.relpath(path, REPO)] = n
  assert not long, f"files over {MAX_LINES} lines: {long}"
