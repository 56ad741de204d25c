"""benchmarks/method_cost.py runs every asked method through the registry and the trainer (no timings asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "method_cost.py"
TINY = ["--model", "vector", "--rounds", "1", "--steps", "1", "--epochs", "2", "--no-warmup", "--clock", "cpu"]


def _load():
    spec = importlib.util.spec_from_file_location("method_cost_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text: str) -> dict[str, list[str]]:
    """``{method: cells}`` of the printed Markdown table."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_a_row_per_method_normal_always_and_the_reference_with_mmpareto(capsys):
    assert _load().main([*TINY, "--only", "pmr,mmpareto"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == ["normal", "pmr", "mmpareto", "mmpareto_authors"]
    assert rows["normal"][1] == "1.00" and rows["normal"][4] == "1.00"
    for cells in rows.values():
        assert not cells[0].startswith("failed"), cells
        assert float(cells[0]) > 0 and float(cells[3].replace(",", "")) > 0  # ms / step, ms / run
    assert "epoch features" in rows["pmr"][5]  # its declared per-epoch pass is named
    assert rows["mmpareto"][5] == "—"


def test_a_method_added_to_the_registry_is_timed_without_editing_the_script(capsys):
    from ogmge.methods import BalancingMethod, registry

    class CostProbe(BalancingMethod):
        """A plain method registered only for this test."""

        name = "cost_probe_test"
        min_modalities = 2

    registry.register(CostProbe)
    try:
        assert _load().main([*TINY, "--only", "cost_probe_test", "--no-reference"]) == 0
        assert list(_rows(capsys.readouterr().out)) == ["normal", "cost_probe_test"]
    finally:
        registry._REGISTRY.pop("cost_probe_test", None)


def test_an_unknown_method_names_the_registered_ones():
    with pytest.raises(SystemExit, match=r"unknown methods \['nope'\]; registered: normal"):
        _load().main([*TINY, "--only", "nope"])
