"""The package's layers hold (docs/architecture.md): no module imports a layer above its
own, nor a package that sits beside it.

Layers, each ignorant of those above it (DESIGN §6):
0 contracts and root utilities (``ogmge.contracts``, ``ogmge.validation``, ``ogmge.io_utils``, ...);
1 the modulation core and data, side by side (data imports no model, modulation or method);
2 balancing methods (tensors, parameters and modality names, never a model class);
3 models, which import nothing of the methods either (a model holds no method logic);
4 training; 5 interfaces.
Every ``import`` counts, including those inside functions: a lazy upward import is
still a dependency on the layer above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ogmge

ROOT = Path(ogmge.__file__).resolve().parent

#: package (first component under ``ogmge``) -> layer; packages of one layer sit side by
#: side and may not import each other
PACKAGES = {"modulation": 1, "data": 1, "methods": 2, "models": 3, "training": 4, "interfaces": 5}
LAYER_NAMES = {0: "contracts/utilities", 1: "modulation | data", 2: "methods", 3: "models", 4: "training",
               5: "interfaces"}
#: (package, package below it) pairs that stay independent all the same: models know no method
INDEPENDENT = {("models", "methods")}


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
        return PACKAGES["interfaces"]
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
#: Known exceptions to the map, ``(module, imported module)``, each to be removed with the
#: import itself (``test_every_allowed_exception_is_a_live_import`` fails on a stale one): none left.
KNOWN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else None


def upward_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every import in ``source`` (the text of ``module``) of a layer above ``module``'s, or of
    a package beside it in the same layer."""
    own = layer_of(module)
    problems = []
    for line, target in imported_modules(source, module, is_package=is_package):
        theirs = layer_of(target)
        if (module, target) in FACADE_LAZY or (module, target) in KNOWN_EXCEPTIONS:
            continue
        mine, other = package_of(module), package_of(target)
        beside = theirs == own and None not in (mine, other) and mine != other
        independent = (mine, other) in INDEPENDENT
        if theirs > own or beside or independent:
            how = "beside it" if beside else "independent of it" if independent else "above it"
            problems.append(f"{module}:{line} (layer {own}, {LAYER_NAMES[own]}) imports {target} "
                            f"(layer {theirs}, {LAYER_NAMES[theirs]}: {how})")
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


def test_every_allowed_exception_is_a_live_import():
    """An exception outliving its import would silently allow the edge again: each must exist."""
    edges = set()
    for path in package_modules():
        module = module_name(path)
        edges |= {(module, target) for _, target in
                  imported_modules(path.read_text(), module, is_package=path.name == "__init__.py")}
    stale = (FACADE_LAZY | KNOWN_EXCEPTIONS) - edges
    assert not stale, f"remove these exceptions, their imports are gone: {sorted(stale)}"


def test_the_walk_sees_the_whole_package():
    names = {module_name(p) for p in package_modules()}
    assert {"ogmge.contracts", "ogmge.models.encoders", "ogmge.training.loop",
            "ogmge.interfaces.cli"} <= names


@pytest.mark.parametrize(
    ("module", "source", "target"),
    [
        ("ogmge.models.encoders", "from ..methods.gblend import GBlending\n", "ogmge.methods.gblend"),
        ("ogmge.models.classifier", "def f():\n    from ogmge.methods import registry\n", "ogmge.methods.registry"),
        ("ogmge.models.classifier", "from ..methods.uni_ensemble import combine\n", "ogmge.methods.uni_ensemble"),
        ("ogmge.methods.gblend", "from ..models import MultimodalClassifier\n", "ogmge.models"),
        ("ogmge.data.byo", "from ..models.encoders import VectorEncoder\n", "ogmge.models.encoders"),
        ("ogmge.data.builtin", "from ogmge.modulation import OGMGE\n", "ogmge.modulation"),
        ("ogmge.data.clips", "import ogmge.methods.mdrop\n", "ogmge.methods.mdrop"),
        ("ogmge.modulation.ogmge", "from ..data.collate import collate_samples\n", "ogmge.data.collate"),
        ("ogmge.models.encoders", "import ogmge.training.loop\n", "ogmge.training.loop"),
        ("ogmge.modulation.ogmge", "def f():\n    from ogmge import models\n", "ogmge.models"),
        ("ogmge.contracts", "from .modulation import OGMGE\n", "ogmge.modulation"),
        ("ogmge.training.loop", "from ogmge.interfaces.plots import plot_runs\n", "ogmge.interfaces.plots"),
        ("ogmge.data", "from . import collate\nfrom ..training import train\n", "ogmge.training"),
    ],
)
def test_an_injected_upward_or_sideways_import_is_reported(module, source, target):
    problems = upward_imports(source, module, is_package=module == "ogmge.data")
    assert len(problems) == 1 and f"imports {target} " in problems[0], problems


def test_the_map_puts_data_beside_modulation_and_keeps_models_free_of_methods():
    assert layer_of("ogmge.data.byo") == layer_of("ogmge.modulation.ogmge") < layer_of("ogmge.methods.gblend")
    assert layer_of("ogmge.methods.gblend") < layer_of("ogmge.models.encoders") < layer_of("ogmge.training.loop")
    assert upward_imports("from ..data.views import DatasetView\n", "ogmge.models.encoders") == []
    assert upward_imports("from ..modulation import OPM\n", "ogmge.models.classifier") == []


def test_downward_and_same_layer_imports_pass():
    src = ("from ..contracts import ModalitySpec\nfrom ..modulation import OPM\n"
           "from .resnet import ResNet18\nimport torch\n")
    assert upward_imports(src, "ogmge.models.encoders") == []


def test_an_unplaced_subpackage_is_an_error():
    with pytest.raises(KeyError, match="ogmge.newthing.x: not in the layer map"):
        layer_of("ogmge.newthing.x")
