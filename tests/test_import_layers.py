"""The folders are layers, and every import points down (or sideways, within a folder):

    cli, cli_errors, api, __main__, __init__    the command line, the API, the face
    use/                        predict, export: a trained network put to use
    views/                      trace, plots, timing: what a person reads
    run/                        training, its folder, log, checkpoints, processes
    data/                       data sources, images, augmentation
    model/                      network, losses, optimizers
    spec/                       the config
    layers/                     each layer type: spec, compute, formulas, ONNX nodes
    kernels/                    Numba kernels (numpy and numba only: test_layout.py)
    errors, runtime, outputs, extras, team, version    the ground floor

Imports inside functions count as much as those at the top: a lazy upward import is
still a dependency the wrong way. An upward import fails here, naming both modules."""

import ast
import os

import pytest

LAYERS = ["ground", "kernels", "layers", "spec", "model", "data", "run", "views", "use", "top"]
GROUND = {"errors", "runtime", "outputs", "extras", "team", "version"}
TOP = {"cli", "cli_errors", "api", "__main__", "__init__"}


def layer_of(module):
    """The layer of a dotted module name under convtrain (None for one outside it)."""
    parts = module.split(".")
    if parts[0] != "convtrain":
        return None
    if len(parts) == 1 or parts[1] in TOP:
        return "top"
    if parts[1] in GROUND:
        return "ground"
    if parts[1] == "datasets":
        return "ground"  # package data, no code
    assert parts[1] in LAYERS, f"convtrain.{parts[1]} belongs to no layer: add it to the map"
    return parts[1]


def imports(path, source_root):
    """The modules a file imports, anywhere in it, as (line, dotted name); source_root is
    the folder that holds the package, to tell `from convtrain.run import report` (a
    module) from `from convtrain import __version__` (a name)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                place = os.path.join(source_root, *dotted.split("."))
                if os.path.isdir(place) or os.path.exists(place + ".py"):
                    yield node.lineno, dotted


def upward_imports(package_root):
    found = []
    for folder, _, names in os.walk(package_root):
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, os.path.dirname(package_root))
            module = relative[:-3].replace(os.sep, ".").removesuffix(".__init__")
            if module == "convtrain":
                module = "convtrain.__init__"
            mine = LAYERS.index(layer_of(module))
            for line, imported in imports(path, os.path.dirname(package_root)):
                theirs = layer_of(imported)
                if theirs is not None and LAYERS.index(theirs) > mine:
                    found.append(f"{relative}:{line} ({layer_of(module)}) imports {imported} "
                                 f"({theirs})")
    return sorted(set(found))


def test_every_import_points_down(repo_root):
    assert upward_imports(os.path.join(repo_root, "convtrain")) == []


def test_an_upward_import_is_found(tmp_path, repo_root):
    """The check sees a planted upward import: the network importing the run's report."""
    import shutil

    package = tmp_path / "convtrain"
    shutil.copytree(os.path.join(repo_root, "convtrain"), package,
                    ignore=shutil.ignore_patterns("__pycache__", "datasets"))
    network = package / "model" / "network.py"
    network.write_text(network.read_text() + "\n\ndef _planted():\n"
                       "    from convtrain.run import report\n")
    found = upward_imports(str(package))
    assert found and all(line.startswith("convtrain/model/network.py:") for line in found)
    assert any(line.endswith("(model) imports convtrain.run.report (run)") for line in found)


@pytest.mark.parametrize("module, layer", [("convtrain.cli", "top"), ("convtrain.errors", "ground"),
                                           ("convtrain.run.train", "run"), ("numpy", None)])
def test_layer_of(module, layer):
    assert layer_of(module) == layer
