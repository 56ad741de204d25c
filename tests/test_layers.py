"""The package's layers hold: no module imports a layer above its own (docs/architecture.md).

Layers, each ignorant of those above it:
0 contracts and root utilities (``ogmge.contracts``, ``ogmge.validation``, ...),
1 modulation core and balancing methods, 2 models, 3 data, 4 training, 5 interfaces.
Every ``import`` counts, including those inside functions: a lazy upward import is
still a dependency on the layer above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ogmge

ROOT = Path(ogmge.__file__).resolve().parent

#: package (first component under ``ogmge``) -> layer
PACKAGES = {"modulation": 1, "methods": 1, "models": 2, "data": 3, "training": 4, "interfaces": 5}
LAYER_NAMES = {0: "contracts/utilities", 1: "modulation/methods", 2: "models", 3: "data",
               4: "training", 5: "interfaces"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["ogmge", *parts])


def layer_of(module: str) -> int:
    """The layer of an ``ogmge`` module; an unknown subpackage is an error (place it in PACKAGES)."""
    parts = module.split(".")
    if parts == ["ogmge"]:
        return 1  # the package facade re-exports the modulation core
    if parts[1] == "__main__":
        return 5
    if parts[1] in PACKAGES:
        return PACKAGES[parts[1]]
    if len(parts) == 2 and (ROOT / f"{parts[1]}.py").is_file():
        return 0
    raise KeyError(f"{module}: not in the layer map of tests/test_layers.py")


def imported_modules(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``ogmge`` module that ``source`` imports (relative imports
    resolved against ``module``; ``from pkg import sub`` counts as importing ``pkg.sub``)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "ogmge"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ogmge":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else target))
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


#: The one allowed upward import: ``ogmge.compare`` (DESIGN §5), which the package facade
#: resolves in its module ``__getattr__`` on first use, so ``import ogmge`` stays the
#: modulation core (tests/training/test_compare.py checks that it loads no training module).
FACADE_LAZY = {("ogmge", "ogmge.interfaces.compare_report")}


def upward_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every import in ``source`` (the text of ``module``) of a layer above ``module``'s."""
    own = layer_of(module)
    problems = []
    for line, target in imported_modules(source, module, is_package=is_package):
        theirs = layer_of(target)
        if theirs > own and (module, target) not in FACADE_LAZY:
            problems.append(f"{module}:{line} (layer {own}, {LAYER_NAMES[own]}) imports {target} "
                            f"(layer {theirs}, {LAYER_NAMES[theirs]})")
    return problems


def package_modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_in_the_layer_map():
    for path in package_modules():
        layer_of(module_name(path))


def test_no_module_imports_a_higher_layer():
    problems = []
    for path in package_modules():
        problems += upward_imports(path.read_text(), module_name(path), is_package=path.name == "__init__.py")
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_the_walk_sees_the_whole_package():
    names = {module_name(p) for p in package_modules()}
    assert {"ogmge.contracts", "ogmge.models.encoders", "ogmge.training.loop",
            "ogmge.interfaces.cli"} <= names


@pytest.mark.parametrize(
    ("module", "source", "target"),
    [
        ("ogmge.models.encoders", "from ..data.kinds import ModalitySpec\n", "ogmge.data.kinds"),
        ("ogmge.models.encoders", "import ogmge.training.loop\n", "ogmge.training.loop"),
        ("ogmge.modulation.ogmge", "def f():\n    from ogmge import models\n", "ogmge.models"),
        ("ogmge.contracts", "from .modulation import OGMGE\n", "ogmge.modulation"),
        ("ogmge.training.loop", "from ogmge.interfaces.plots import plot_runs\n", "ogmge.interfaces.plots"),
        ("ogmge.data", "from . import collate\nfrom ..training import train\n", "ogmge.training"),
    ],
)
def test_an_injected_upward_import_is_reported(module, source, target):
    problems = upward_imports(source, module, is_package=module == "ogmge.data")
    assert len(problems) == 1 and f"imports {target} " in problems[0], problems


def test_downward_and_same_layer_imports_pass():
    src = ("from ..contracts import ModalitySpec\nfrom ..modulation import OPM\n"
           "from .resnet import ResNet18\nimport torch\n")
    assert upward_imports(src, "ogmge.models.encoders") == []


def test_an_unplaced_subpackage_is_an_error():
    with pytest.raises(KeyError, match="ogmge.newthing.x: not in the layer map"):
        layer_of("ogmge.newthing.x")
