"""Every ```python block of README.md and docs/*.md runs, as written.

Convention (docs/architecture.md, "Examples in the docs"): a block is executed on its
own, in a fresh namespace, in an empty temporary directory. A block that cannot run
here carries, on the line right before its fence, a visible marker

    <!-- not-run: needs a CUDA device -->      (reported as a skip with that reason)
    <!-- requires: lightning -->               (skipped when the package is missing)

A block that reads data the user prepares first (a CREMA-D cache, a clips cache) carries

    <!-- setup: cremad-cache -->               (SETUPS: the files it names, generated)

and runs in a temporary directory where that data exists at the path the block names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->$")
REQUIRES = re.compile(r"^<!--\s*requires:\s*(?P<packages>[\w.,\s]+?)\s*-->$")
SETUP = re.compile(r"^<!--\s*setup:\s*(?P<name>[\w-]+)\s*-->$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    not_run: str | None
    requires: tuple[str, ...]
    setup: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def collect_blocks(path: Path) -> list[Block]:
    """The ```python blocks of one markdown file, with the marker before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = start + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.name}:{start + 1}: unclosed code fence")
        if lang == "python":
            marker = lines[start - 1].strip() if start > 0 else ""
            not_run = NOT_RUN.match(marker)
            requires = REQUIRES.match(marker)
            setup = SETUP.match(marker)
            blocks.append(Block(
                path, start + 1, "\n".join(lines[start + 1:end]) + "\n",
                not_run.group("reason") if not_run else None,
                tuple(p.strip() for p in requires.group("packages").split(",")) if requires else (),
                setup.group("name") if setup else None,
            ))
        i = end + 1
    return blocks


BLOCKS = [b for path in DOCS for b in collect_blocks(path)]


def test_the_collector_finds_the_blocks_and_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n\n<!-- not-run: needs a CUDA device -->\n```python\ny = 2\n```\n"
        "```bash\nls\n```\n<!-- requires: lightning, av -->\n```python\nz = 3\n```\n"
        "<!-- setup: clips-cache -->\n```python\nw = 4\n```\n"
    )
    found = collect_blocks(page)
    assert [(b.line, b.code, b.not_run, b.requires, b.setup) for b in found] == [
        (2, "x = 1\n", None, (), None),
        (7, "y = 2\n", "needs a CUDA device", (), None),
        (14, "z = 3\n", None, ("lightning", "av"), None),
        (18, "w = 4\n", None, (), "clips-cache"),
    ]
    assert len(BLOCKS) >= 8  # README and docs/ hold at least eight examples


def cremad_cache(work: Path) -> None:
    """``cache/cremad``: ``ogmge prepare cremad`` over 8 generated clips in the official layout
    (6 in train.csv, 2 in test.csv; WAV + JPEG frames)."""
    from ogmge.data.prepare import prepare_dataset
    from support.paper_rawdata import make_cremad

    raw = make_cremad(work / "raw" / "CREMA-D", video=False, frames=True)
    prepare_dataset("cremad", raw, work / "cache" / "cremad", progress=False)


def clips_cache(work: Path) -> None:
    """``cache/mine``: ``ogmge prepare clips`` over ``my_clips/<class>/``, 4 tiny mp4 clips
    (1 s, 2 fps, AAC) in each of 2 classes."""
    from ogmge.data.clips import prepare_clips
    from support.clips_rawdata import write_clip

    for c, label in enumerate(("cat", "dog")):
        for i in range(4):
            write_clip(work / "raw" / "my_clips" / label / f"{label}{i}.mp4", seconds=1.0, fps=2,
                       size=(24, 32), seed=4 * c + i)
    prepare_clips(work / "raw" / "my_clips", work / "cache" / "mine", progress=False)


#: ``<!-- setup: NAME -->``: writes, under the block's working directory, the data it reads.
SETUPS = {"cremad-cache": cremad_cache, "clips-cache": clips_cache}


def test_every_example_runs_in_ci():
    """CI runs every example: a block that needs data names a setup (SETUPS) that generates it,
    rather than a ``not-run`` marker."""
    assert {b.setup for b in BLOCKS if b.setup} <= set(SETUPS)
    assert {b.setup for b in BLOCKS if b.setup} == set(SETUPS)  # no setup is left unused
    assert [b.id for b in BLOCKS if b.not_run is not None] == []


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_docs_example_runs(block, tmp_path, monkeypatch):
    if block.not_run is not None:
        pytest.skip(f"{block.id}: not run: {block.not_run}")
    for package in block.requires:
        pytest.importorskip(package, reason=f"{block.id} requires {package}")
    if block.setup is not None:
        SETUPS[block.setup](tmp_path)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    # padded so that line numbers in a traceback point into the markdown file
    code = compile("\n" * block.line + block.code, str(block.path), "exec")
    exec(code, {"__name__": f"docs_example_{block.line}"})


def _public_objects():
    import inspect

    import ogmge
    import ogmge.modulation
    from ogmge.models import build_model, build_paper_model
    from ogmge.training import TrainConfig

    for module in (ogmge, ogmge.modulation):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
    for obj in (build_model, build_paper_model, TrainConfig):
        yield f"{obj.__module__}.{obj.__name__}", obj


def test_public_api_carries_doctest_examples():
    """Every public class and function of ``ogmge`` and ``ogmge.modulation``, the model
    builders and ``TrainConfig`` show a ``>>>`` example (run by --doctest-modules)."""
    missing = sorted({name for name, obj in _public_objects() if ">>>" not in (obj.__doc__ or "")})
    assert not missing, f"public objects without a >>> example: {missing}"


SECTIONS = ("Parameters", "Returns", "Yields", "Raises", "Warns", "Examples", "Notes", "Attributes",
            "See Also", "References", "Other Parameters")


def _docstrings():
    import ast

    for path in sorted((ROOT / "src" / "ogmge").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    yield f"{path.relative_to(ROOT)}:{getattr(node, 'name', '<module>')}", doc


def check_sections(doc: str) -> list[str]:
    """numpydoc section headers: a known name alone on its line, underlined by as many dashes."""
    lines = doc.splitlines()
    problems = []
    for line, below in zip(lines, lines[1:]):
        text, underline = line.strip(), below.strip()
        if len(underline) >= 3 and set(underline) == {"-"} and (text not in SECTIONS or len(underline) != len(text)):
            problems.append(f"{text!r} underlined by {len(underline)} dashes")
    return problems


def test_check_sections_finds_the_old_ogmge_header():
    assert check_sections("Parameters (keyword-only after ``encoders``)\n----------\nx: y\n")
    assert check_sections("Parameters\n-----\nx : int\n")
    assert check_sections("Parameters\n----------\nx : int\n\nExamples\n--------\n>>> 1\n1\n") == []


def test_docstring_sections_parse():
    bad = {where: problems for where, doc in _docstrings() if (problems := check_sections(doc))}
    assert not bad, bad
