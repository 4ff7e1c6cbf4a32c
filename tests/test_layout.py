"""The package's layout: no two modules import each other, and moved modules and names leave no shim behind."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

import stgcn_pyg

PACKAGE = Path(stgcn_pyg.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The stgcn_pyg modules ``path`` imports anywhere in it (inside functions too: a lazy import is an import)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` and `from .pkg import module` name modules; anything else names the module itself
            found.update(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names)
    return (found & modules) - {name}


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def test_graph_sees_imports(import_graph):
    # the graph is read right: these imports exist
    assert "stgcn_pyg.deploy.exported_file" in import_graph["stgcn_pyg.deploy.runtime"]
    assert "stgcn_pyg.checkpoint" in import_graph["stgcn_pyg.deploy.runtime"]  # a lazy import, in a function
    assert "stgcn_pyg.deploy.runtime" in import_graph["stgcn_pyg.deploy.export"]


def test_no_two_modules_import_each_other(import_graph):
    # export writes a file and checks it by reading it back (runtime); runtime must not need the writer
    assert "stgcn_pyg.deploy.export" not in import_graph["stgcn_pyg.deploy.runtime"]
    mutual = sorted((a, b) for a, deps in import_graph.items() for b in deps
                    if a < b and a in import_graph.get(b, ()))
    assert mutual == []


def test_moved_modules_have_no_shims_left():
    for old in ("checkpoint", "config", "distributed"):
        assert importlib.util.find_spec(f"stgcn_pyg.training.{old}") is None, old
        assert importlib.util.find_spec(f"stgcn_pyg.{old}") is not None, old
    # the public names the README imports from stgcn_pyg.training come from the real modules
    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.config import load_config
    from stgcn_pyg.training import load_checkpoint as training_load_checkpoint
    from stgcn_pyg.training import load_config as training_load_config
    from stgcn_pyg.training import train  # noqa: F401

    assert training_load_checkpoint is load_checkpoint and training_load_config is load_config


def test_moved_names_have_no_shims_left():
    # a module-level __getattr__ is how a module forwards names that moved elsewhere
    forwarding = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                  if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__"
                         for n in ast.parse(p.read_text()).body)]
    assert forwarding == []
    from stgcn_pyg.cli import evaluate as cli_evaluate
    from stgcn_pyg.training import trainer

    # their homes: stgcn_pyg.evaluation.descriptor_file and stgcn_pyg.training.run
    assert [n for n in ("FEATURES_FORMAT", "read_features") if hasattr(cli_evaluate, n)] == []
    moved = ("StepSchedule", "build_optimizer", "config_for_resume", "load_data", "seed_everything")
    assert [n for n in moved if hasattr(trainer, n)] == []
