"""The package's boundaries, read from its source: no import cycle (module-level and function-level
imports alike), and no module reaching into another module's private members."""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import pytest

from tests.helpers import REPO

SRC = REPO / "src"
ARCHITECTURE = REPO / "docs" / "architecture.md"

LAYERS = [
    {"streamvlm", "errors", "lazy", "jsonfiles", "outputs", "settings", "threads", "device"},
    {"video"},
    {"model"},
    {"data"},
    {"engine"},
    {"train", "evaluation", "serve"},
    {"experiments", "benchmarks", "client"},
    {"cli"},
]
"""The packages (and top-level modules) from the bottom up, as docs/architecture.md draws them: each
imports only from the layers below it (and from itself)."""

THIRD_PARTY_PRIVATE = {
    "_from_config": "transformers: PreTrainedModel._from_config builds a model from its config without weights",
    "_is_hf_initialized": "transformers: the flag its initialisation reads to skip parameters already set",
    "_reset_state": "accelerate: AcceleratorState._reset_state, the documented way to forget a distributed setup",
    "_exit": "os._exit, the documented exit without interpreter teardown (an interrupted run, cli.entry_point)",
}
"""Private names of other libraries that the code uses on purpose (the reason beside each)."""


# ---------------------------------------------------------------------------- the source, as modules
@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def modules(src: Path, package: str = "streamvlm") -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every module under ``src/package``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def imported(name: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The modules of ``known`` that one import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = name.split(".") if is_package else name.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # ``from package import module`` loads the module; ``from module import name`` the module
        targets = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix for alias in node.names]
    found = set()
    for target in targets:
        while target not in known and "." in target:  # a name inside a module: the module
            target = target.rsplit(".", 1)[0]
        if target in known and target != name:
            found.add(target)
    return found


def import_graph(src: Path, package: str = "streamvlm") -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere (top level, inside functions, under
    TYPE_CHECKING: each is an edge a reader follows)."""
    known = modules(src, package)
    graph = {}
    for name, (path, is_package) in known.items():
        edges: set[str] = set()
        for node in ast.walk(parsed(path)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= imported(name, is_package, node, set(known))
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def own_names(tree: ast.Module) -> set[str]:
    """Names a module defines itself: functions, classes, assigned names, arguments, and
    attributes it sets on ``self`` / ``cls``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)
    return names


def private_reaches(path: Path, allowed: set[str] = frozenset()) -> list[str]:
    """``file:line: what`` for each private member of another module this file touches: an
    attribute ``x._name`` (``x`` not ``self`` / ``cls``) that the file does not define itself, or
    ``from module import _name``. Dunder names are public."""
    tree = parsed(path)
    own = own_names(tree)
    found = []

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__") and name not in allowed

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in own:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)[:60]}")
        elif isinstance(node, ast.ImportFrom):
            found += [f"{path}:{node.lineno}: from {node.module} import {alias.name}"
                      for alias in node.names if private(alias.name)]
    return found


# ---------------------------------------------------------------------------- the checks
def test_no_import_cycle():
    graph = import_graph(SRC)
    assert len(graph) > 150  # every module was read
    assert cycles(graph) == []


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else module
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def test_packages_import_only_the_layers_below_them():
    graph = import_graph(SRC)

    def unit(module: str) -> str:  # a package, or the bottom layer's modules as one
        return "bottom" if layer_of(module) == 0 else module.split(".")[1]

    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if unit(a) != unit(b) and layer_of(b) >= layer_of(a))
    assert upward == []


def test_no_module_reaches_into_another_modules_private_members():
    found = [hit for path, _ in modules(SRC).values() for hit in private_reaches(path, set(THIRD_PARTY_PRIVATE))]
    assert found == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    """Both checks fail on a package built to break them (so they can fail at all)."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n\nclass A:\n    def __init__(self):\n        self._mine = 1\n\n"
                                  "    def same(self, other):\n        return other._mine\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..a import A\n    return A()._theirs\n")
    (package / "c.py").write_text("from .a import _hidden\nimport pkg.sub.b\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}  # a function-level import counts
    assert graph["pkg.c"] == {"pkg.a", "pkg.sub.b"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    assert private_reaches(package / "a.py") == []  # its own member, on another instance
    assert [hit.split(": ", 1)[1] for hit in private_reaches(package / "sub" / "b.py")] == ["A()._theirs"]
    assert [hit.split(": ", 1)[1] for hit in private_reaches(package / "c.py")] == ["from a import _hidden"]


BOUNDARY_TYPES = {"model": "StreamVLM", "assistant": "LiveAssistant", "session": "StreamSession",
                  "sessions": "Sequence[StreamSession]"}
"""Parameters by these names carry the project's own types wherever they pass (a reader, and a
type checker, sees what crosses a boundary)."""
LONGEST_FUNCTION = 80
"""Lines: a function longer than this is split (one job each)."""


def functions(path: Path):
    for node in ast.walk(parsed(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_the_model_assistant_and_session_are_typed_where_they_pass():
    untyped = []
    for name, (path, _) in modules(SRC).items():
        for node in functions(path):
            for arg in node.args.args + node.args.kwonlyargs:
                if arg.arg in BOUNDARY_TYPES and name != "streamvlm.model.vlm":
                    annotation = ast.unparse(arg.annotation) if arg.annotation else None
                    if annotation is None or "Any" in annotation:
                        untyped.append(f"{path}:{node.lineno} {node.name}({arg.arg}: {annotation})")
    assert untyped == []


def test_no_function_is_long():
    long = [f"{path}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
            for path, _ in modules(SRC).values() for node in functions(path)
            if node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION]
    assert long == []


@pytest.mark.parametrize("name", sorted(THIRD_PARTY_PRIVATE))
def test_allowed_private_names_are_still_used(name):
    """An allowance nobody needs any more is removed."""
    assert any(f"._{name[1:]}" in path.read_text(encoding="utf-8") for path, _ in modules(SRC).values())


# ---------------------------------------------------------------------------- docs/architecture.md
def named_paths(text: str) -> set[str]:
    """Folder and file paths written in the document (``engine/session.py``, ``serve/``, ``client.py``)."""
    return set(re.findall(r"(?<![\w./-])(?:[a-z_]+/)+(?:[a-z_]+\.py)?|(?<![\w./-])[a-z_]+\.py\b", text))


def test_every_path_the_architecture_names_exists():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = []
    for path in sorted(named_paths(text)):
        if path.split("/")[0] in ("src", "tests", "docs"):
            where = REPO / path
        elif path.startswith("streamvlm/"):
            where = SRC / path
        elif "/" in path:
            where = SRC / "streamvlm" / path
        else:  # a file named on its own, below the package named before it
            where = next((SRC / "streamvlm").rglob(path), SRC / "streamvlm" / path)
        if not where.exists():
            missing.append(path)
    assert missing == []
    for dotted in sorted(set(re.findall(r"\bstreamvlm(?:\.\w+)+", text))):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                found = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            assert found is not None, dotted
            break


def test_the_architecture_names_every_package_and_the_session_contracts():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    packages = sorted(p.parent.name for p in (SRC / "streamvlm").glob("*/__init__.py"))
    assert [p for p in packages if f"{p}/" not in text] == []
    assert {layer for layer in LAYERS for layer in layer} >= set(packages)
    from streamvlm.engine.session import StreamSession

    section = text.split("## The session's contracts")[1].split("\n## ")[0]
    methods = re.findall(r"^\| `(\w+)\(", section, re.M) + re.findall(r"^\| `\w+\([^`]*\)` / `(\w+)\(", section, re.M)
    assert len(methods) >= 14 and [m for m in methods if not callable(getattr(StreamSession, m, None))] == []
