"""The package tree is the architecture: rooms import only downward, and no module imports itself in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tlgan"

# Lower number = lower layer. Helpers are the top-level modules of the package.
LAYERS = {"helpers": 0, "models": 1, "sampling": 2, "training": 2, "axes": 3, "editing": 4, "evaluation": 4,
          "photos": 5, "apps": 6, "public": 7}
ROOMS = [name for name in LAYERS if name not in ("helpers", "public")]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    if module in ("tlgan", "tlgan.__main__"):  # the public API re-exports from every room
        return "public"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS) else "helpers"


def imports_of(path: Path) -> set[str]:
    """Every tlgan module imported anywhere in the file (lazy imports in functions count too)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tlgan")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tlgan":
                continue
            for alias in node.names:  # "from pkg import submodule" imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m != module}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {m: imports_of(p) for m, p in MODULES.items()}


def test_rooms_exist_and_say_what_they_hold() -> None:
    for room in ROOMS:
        init = PACKAGE / room / "__init__.py"
        assert init.exists(), room
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "may use" in doc, f"{room}/__init__.py must say what lives there and what it may use"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    here = room_of(module)
    for target in GRAPH[module]:
        there = room_of(target)
        if there == here:
            continue
        assert LAYERS[there] < LAYERS[here], f"{module} ({here}) imports {target} ({there}), which is not below it"


def test_no_import_cycles() -> None:
    # Package __init__ files that re-export their own submodules are not cycles of behaviour; skip edges into parents.
    def edges(m: str) -> set[str]:
        return {t for t in GRAPH[m] if t in MODULES and not m.startswith(t + ".")}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    """The cycle check above can fail: two modules importing each other are found."""
    global GRAPH, MODULES
    saved = GRAPH, MODULES
    try:
        MODULES = {"tlgan.a": tmp_path, "tlgan.b": tmp_path}
        GRAPH = {"tlgan.a": {"tlgan.b"}, "tlgan.b": {"tlgan.a"}}
        with pytest.raises(AssertionError, match="import cycle"):
            test_no_import_cycles()
    finally:
        GRAPH, MODULES = saved
