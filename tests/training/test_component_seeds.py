"""Each random component of a run draws its own stream, derived from (seed, name),
saved in one place, and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from ogmge.contracts import ModalitySpec
from ogmge.seeding import component_seed
from ogmge.training import TrainConfig
from ogmge.training.factory import build_method, build_model_from_config
from support.training_standins import tiny_bundle

SPECS = {n: ModalitySpec(n, "vector", (4,)) for n in ("a", "b", "c", "d", "e", "f", "g")}


def test_component_seed_is_stable_and_distinct():
    # pinned: the derivation must not change between versions (resumed runs, DDP ranks)
    assert component_seed(0, "ogmge") == component_seed(0, "ogmge") == 7134619212516523683
    seeds = {component_seed(s, n) for s in (0, 1, 2) for n in ("ogmge", "opm", "estimator")}
    assert len(seeds) == 9 and all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(TypeError, match="seed must be an integer, got 1.5"):
        component_seed(1.5, "ogmge")
    with pytest.raises(ValueError, match="name must be a non-empty string, got ''"):
        component_seed(0, "")


def make(seed: int = 7):
    cfg = TrainConfig(dataset="byo", data="unused.npz", modulation="OGM_GE", opm=True, fusion="concat", estimator="shapley",
                      seed=seed)
    model, _ = build_model_from_config(cfg, SPECS, 3)
    model.estimator.exact_max = 3  # 7 modalities: sampled Shapley, so the estimator draws too
    return model, build_method(cfg, model)  # the chain ogm_ge+opm


def streams(model, method, n: int = 6) -> dict[str, torch.Tensor]:
    """The next ``n`` draws of each component's generator (CPU)."""
    ogm, opm = method.members
    gens = {"ogmge": ogm.modulator.generators.get("cpu"), "opm": opm.opm.generators.get("cpu"),
            "estimator": model.estimator.generator}
    return {name: torch.rand(n, generator=g) for name, g in gens.items()}


def test_streams_differ_and_follow_the_derived_seeds():
    model, modulator = make(seed=7)
    draws = streams(model, modulator)
    assert not torch.equal(draws["ogmge"], draws["opm"])
    assert not torch.equal(draws["ogmge"], draws["estimator"])
    assert not torch.equal(draws["opm"], draws["estimator"])
    for name, values in draws.items():
        expected = torch.rand(6, generator=torch.Generator().manual_seed(component_seed(7, name)))
        assert torch.equal(values, expected), name


def test_each_stream_resumes_exactly_from_the_saved_states():
    model, modulator = make()
    streams(model, modulator)  # advance every stream
    model_state = {k: v for k, v in model.state_dict().items()}
    mod_state = modulator.state_dict()  # the method's
    expected = streams(model, modulator)

    fresh_model, fresh_mod = make()
    assert not torch.equal(streams(fresh_model, fresh_mod)["opm"], expected["opm"])
    fresh_model, fresh_mod = make()
    fresh_model.load_state_dict(model_state)
    fresh_mod.load_state_dict(mod_state)
    resumed = streams(fresh_model, fresh_mod)
    for name in expected:
        assert torch.equal(resumed[name], expected[name]), name


def test_the_method_holds_opm_and_ogmge_state_and_the_model_only_the_estimators():
    model, method = make()
    keys = [k for k in model.state_dict() if k.endswith("_extra_state")]
    assert sorted(keys) == ["_extra_state", "estimator._extra_state"]
    assert model.state_dict()["_extra_state"] == {}  # the model holds no method
    assert set(method.state_dict()) == {"ogm_ge", "opm"}


def _opm_config(out, **changes) -> TrainConfig:
    values = dict(epochs=3, batch_size=16, modulation="OGM_GE", opm=True,
                  fusion="concat", estimator="shapley", seed=5, device="cpu", progress=False, out=str(out))
    values.update(changes)
    return TrainConfig(**values)


def test_checkpoints_save_helper_states_once_and_older_ones_with_a_copy_still_resume_exactly(tmp_path):
    from ogmge.training import atomic_save, load_checkpoint, load_checkpoint_file, load_run, train

    class Stop(Exception):
        pass

    def stop_after_first(event, info):
        if event == "epoch_end" and info["epoch"] == 0:
            raise Stop

    full = train(_opm_config(tmp_path / "full"), datasets=tiny_bundle())
    cfg = _opm_config(tmp_path / "cut")
    with pytest.raises(Stop):
        train(cfg, datasets=tiny_bundle(), callbacks=[stop_after_first])
    last = tmp_path / "cut" / "last.pt"
    ckpt = load_checkpoint_file(last)
    assert "extra_states" not in ckpt  # the helpers' state is in ckpt["model"], once
    assert ckpt["method"]["opm"] is not None and "opm" not in ckpt["model"]["_extra_state"]
    # an older format: a copy of a helper's state under "extra_states" (ignored)
    ckpt["extra_states"] = {"opm": ckpt["method"]["opm"]}
    atomic_save(ckpt, last)
    assert load_checkpoint(last).epoch == 0

    resumed = train(cfg, resume=True, datasets=tiny_bundle())
    assert resumed.start_epoch == 1
    w_full = load_checkpoint_file(tmp_path / "full" / "last.pt")["model"]
    w_cut = load_checkpoint_file(last)["model"]
    for k, v in w_full.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, w_cut[k]), k
    assert load_run(full.run_dir).trace() == load_run(resumed.run_dir).trace()


def test_modality_dropout_draws_from_its_own_stream_not_the_weight_initialisation_seed():
    from ogmge.methods import BuildContext, get

    md = get("mdrop").build(BuildContext(modalities=("a", "b"), seed=7))
    drawn = torch.rand(6, generator=md.generators.get("cpu"))
    assert torch.equal(drawn, torch.rand(6, generator=torch.Generator().manual_seed(component_seed(7, "mdrop"))))
    assert not torch.equal(drawn, torch.rand(6, generator=torch.Generator().manual_seed(7)))
