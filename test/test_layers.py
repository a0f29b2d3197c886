"""The layers the README's architecture section draws, checked on the source: the ROS-free core
(vision_factory/*.py, backends/, models/) imports neither ROS nor the tooling, the ROS-facing runtime
(vision_factory/ros/) does not import the tooling (vision_factory/tools/, the generator and its command),
and no vision_factory modules import each other in a cycle. Imports inside functions count;
`if TYPE_CHECKING:` blocks do not."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vision_factory"
TOOLING = {"tools", "cli", "__main__", "generator"}  # first name under vision_factory
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "vision_msgs", "vision_factory_msgs",
                "diagnostic_msgs", "lifecycle_msgs", "geometry_msgs")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
               for statement in block.body for node in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def layer(name: str) -> str:
    first = name.split(".")[1] if "." in name else ""
    return "tooling" if first in TOOLING else "ros" if first == "ros" else "core"


def test_the_core_imports_neither_ros_nor_the_tooling() -> None:
    for name, path in MODULES.items():
        if layer(name) != "core":
            continue
        ros = sorted(m for m in imports(path) if m.split(".")[0] in ROS_PACKAGES)
        upward = sorted(m for m in GRAPH[name] if layer(m) != "core")
        assert not ros and not upward, f"{name} (core) imports {ros + upward}"


def test_the_ros_facing_runtime_does_not_import_the_tooling() -> None:
    for name in MODULES:
        if layer(name) == "ros":
            assert not [m for m in GRAPH[name] if layer(m) == "tooling"], name


def test_no_import_cycles() -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join(path[path.index(name):] + (name,))}"
        if name in done:
            return
        for imported in GRAPH[name]:
            visit(imported, path + (name,))
        done.add(name)

    for name in MODULES:
        visit(name, ())
