"""Each layer of src/tmem imports only the layers before it (README).

The order: engine (with the shared helpers corpus and data), protocol,
client, swapdev, server, frontends, guest, monitor, experiments, then
the `tmem` command.  The package itself (`import tmem`) is the public
face: the engine and the client library, at the client's level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tmem

LAYERS = ("engine", "protocol", "client", "swapdev", "server", "frontends",
          "guest", "monitor", "experiments", "cli")
SHARED = {"corpus": "engine", "data": "engine", "testing": "server",
          "__init__": "client"}
SOURCE = Path(tmem.__file__).parent


def _layer(module: str) -> int:
    """The rank of a dotted module under tmem ("" is the package)."""
    top = module.split(".")[0] or "__init__"
    return LAYERS.index(SHARED.get(top, top))


def _is_module(name: str) -> bool:
    top = name.split(".")[0]
    return (SOURCE / top).is_dir() or (SOURCE / f"{top}.py").exists()


def _imports(path: Path) -> set[str]:
    """Every tmem module the file imports, anywhere in it ("" for the
    package face: `import tmem`, `from tmem import Host`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "tmem":
                names = [f"tmem.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "tmem" or name.startswith("tmem."):
                inner = name.removeprefix("tmem").lstrip(".")
                found.add(inner if _is_module(inner) else "")
    return found


def test_no_module_imports_a_layer_below_its_own() -> None:
    wrong = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = ".".join(path.relative_to(SOURCE).with_suffix("").parts)
        wrong += [f"{module} imports tmem.{imported}"
                  for imported in sorted(_imports(path))
                  if _layer(imported) > _layer(module)]
    assert wrong == []


def test_every_folder_of_the_package_has_a_layer() -> None:
    folders = {p.name for p in SOURCE.iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(LAYERS)
