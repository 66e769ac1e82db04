"""The package layering of docs/ARCHITECTURE.md, checked on the imports.

Pure layers never import gevent; monkey-patching happens in the entry point
only; the history (events, merge order) never imports the layers built on it
(sync, folder, net), and sync never imports the I/O layers.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "p2p"
NO_GEVENT = ("wire", "transport", "security", "history", "blocks", "sync", "folder", "gui")
NOT_BELOW = {   # package -> packages it must not import
    "wire": ("transport", "security", "history", "blocks", "sync", "folder", "net", "watch", "gui", "commands"),
    "history": ("sync", "folder", "net", "watch", "gui", "commands", "transport"),
    "blocks": ("sync", "folder", "net", "watch", "gui", "commands"),
    "sync": ("folder", "net", "watch", "gui", "commands", "transport"),
    "folder": ("net", "watch", "gui", "commands"),
}


def imports(path: Path):
    """Every module name ``path`` imports (absolute imports only: the package uses no others)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def modules(package: str):
    return sorted((PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("package", NO_GEVENT)
def test_pure_layers_never_import_gevent(package):
    offenders = [f"{path.relative_to(PACKAGE)}: {name}" for path in modules(package)
                 for name in imports(path) if name.split(".")[0] == "gevent"]
    assert offenders == []


@pytest.mark.parametrize("package", sorted(NOT_BELOW))
def test_a_layer_never_imports_the_layers_built_on_it(package):
    banned = {f"p2p.{name}" for name in NOT_BELOW[package]}
    offenders = [f"{path.relative_to(PACKAGE)}: {name}" for path in modules(package)
                 for name in imports(path) if ".".join(name.split(".")[:2]) in banned]
    assert offenders == []


def test_only_the_entry_point_monkey_patches():
    patching = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                      if "monkey" in {part for name in imports(path) for part in name.split(".")}
                      or "patch_all" in path.read_text(encoding="utf-8"))
    assert patching == ["__main__.py"]
