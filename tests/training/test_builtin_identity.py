"""The built-in data's version and regime travel with a run's data; runs of another
version are refused naming both; the retired v1 knob ``imbalance`` is a clear error."""

import pytest

from ogmge.data import builtin
from ogmge.interfaces.cli import main
from ogmge.training import TrainConfig, build_datasets
from ogmge.training.config import RETIRED_IMBALANCE
from ogmge.training.data import check_data_identity, data_identity

TINY = {"num_samples": {"train": 24, "val": 12, "test": 12}, "frames": 1}


def test_build_datasets_selects_the_regime_and_keeps_the_identity():
    cfg = TrainConfig(dataset_options={"regime": "paper3", **TINY}, modalities=["visual", "sensor"])
    bundle = build_datasets(cfg)
    assert list(bundle.modalities) == ["visual", "sensor"]
    ident = data_identity(bundle)
    assert ident["version"] == builtin.VERSION == 2 and ident["regime"] == "paper3"
    assert ident == bundle.test.identity == bundle.val.identity
    assert data_identity(build_datasets(TrainConfig(dataset_options=TINY)))["regime"] == "paper"
    groups = [set(d.groups) for d in (bundle.train, bundle.val, bundle.test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])


def test_check_data_identity_names_both_versions():
    now = builtin.builtin_identity({"regime": "weak_useless"})
    check_data_identity(now, dict(now))
    check_data_identity(None, None)  # not the built-in data: nothing to compare here
    older = {**now, "version": 1, "regime": "paper"}
    with pytest.raises(ValueError, match=r"this run was trained on built-in data version 1 \(regime 'paper'\); "
                                         r"this installation generates built-in data version 2 \(regime 'weak_useless'\)"):
        check_data_identity(older, now)
    with pytest.raises(ValueError, match="recorded no built-in data version .* version 1"):
        check_data_identity(None, now, what="the run runs/x")
    other = builtin.builtin_identity({"regime": "paper"})
    with pytest.raises(ValueError, match="cue_prob: recorded .*regime: recorded 'weak_useless', now 'paper'"):
        check_data_identity(now, other)


def test_a_pinned_other_version_is_refused():
    with pytest.raises(ValueError, match="asks for built-in data version 3; this installation of ogmge generates version 2"):
        build_datasets(TrainConfig(dataset_options={"version": 3, **TINY}))


def test_retired_imbalance_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="'imbalance' was a setting of the built-in data version 1"):
        TrainConfig.from_dict({"dataset": "builtin", "imbalance": 3.0})
    # a version-1 run's saved configuration (imbalance: null) on the built-in data is refused too
    with pytest.raises(ValueError, match="cannot be evaluated or resumed here"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "imbalance": None})
    # ... while one on other data loads (the key meant nothing there)
    cfg = TrainConfig.from_dict({**TrainConfig(dataset="byo", data="x.npz").to_dict(), "imbalance": None})
    assert cfg.dataset == "byo"
    with pytest.raises(ValueError, match="'imbalance' was a knob of the built-in data version 1"):
        build_datasets(TrainConfig(dataset_options={"imbalance": 3.0}))
    for command in (["train", "--imbalance", "3"], ["demo", "--imbalance", "3"]):
        with pytest.raises(SystemExit) as exc:
            main(command)
        assert exc.value.code == 2
        assert RETIRED_IMBALANCE in capsys.readouterr().err


def test_eval_and_resume_of_a_run_pinned_to_another_version_are_refused(tmp_path, monkeypatch):
    """A run made from a preset pins ``version`` in its saved configuration; under an
    installation that generates another version, eval and resume refuse naming both."""
    from ogmge.training import evaluate_checkpoint, train

    cfg = TrainConfig(
        dataset_options={"regime": "paper", "version": 2, **TINY}, model_options={"hidden": 4, "out_dim": 8},
        modulation="Normal", epochs=1, batch_size=12, lr=0.01, device="cpu", progress=False,
        out=str(tmp_path / "run"),
    )
    train(cfg)
    assert evaluate_checkpoint(tmp_path / "run" / "best.pt")["n"] == 12
    monkeypatch.setattr(builtin, "VERSION", 3)
    message = "asks for built-in data version 2; this installation of ogmge generates version 3"
    with pytest.raises(ValueError, match=message):
        evaluate_checkpoint(tmp_path / "run" / "best.pt")
    with pytest.raises(ValueError, match=message):
        train(cfg.replace(epochs=2), resume=True)
