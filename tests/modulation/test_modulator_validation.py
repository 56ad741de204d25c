"""Bad input fails with errors that name the field and value."""

import pytest
import torch
from torch import nn

from ogmge import OGMGE, OPM


def _enc():
    return {"audio": nn.Conv2d(1, 2, 3), "visual": nn.Conv2d(3, 2, 3)}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": 0}, "alpha.*0"),
        ({"alpha": -0.5}, "alpha.*-0.5"),
        ({"alpha": float("nan")}, "alpha"),
        ({"mode": "ogm"}, "mode.*'ogm'"),
        ({"select": "convs"}, "select.*'convs'"),
        ({"coefficient": "smooth"}, "coefficient.*'smooth'"),
        ({"noise": "some"}, "noise.*'some'"),
        ({"start_epoch": -1}, "start_epoch.*-1"),
        ({"start_epoch": 5, "end_epoch": 3}, "end_epoch"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OGMGE(_enc(), **kwargs)


def test_fewer_than_two_modalities():
    with pytest.raises(ValueError, match="at least two"):
        OGMGE({"audio": nn.Conv2d(1, 2, 3)})


def test_empty_selection_names_the_modality():
    enc = {"audio": nn.Conv2d(1, 2, 3), "text": nn.Linear(4, 4)}
    with pytest.raises(ValueError, match="'text'.*select='conv'"):
        OGMGE(enc, select="conv")
    OGMGE(enc, select="weights")  # fine


def test_auto_selection_is_decided_per_modality():
    enc = {"audio": nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(3, 3)), "text": nn.Linear(4, 4)}
    mod = OGMGE(enc)  # default select="auto"
    assert [n for n, _ in mod.params["audio"]] == ["0.weight"]  # conv kernel only, as the paper
    assert [n for n, _ in mod.params["text"]] == ["weight"]  # no conv: rank >= 2


def test_select_dict_must_match_modalities():
    with pytest.raises(ValueError, match="without an encoder.*'video'"):
        OGMGE(_enc(), select={"audio": "conv", "visual": "conv", "video": "all"})
    with pytest.raises(ValueError, match="no entry.*'visual'"):
        OGMGE(_enc(), select={"audio": "conv"})


def test_class_counts_must_agree():
    mod = OGMGE(_enc())
    with pytest.raises(ValueError, match="number of classes"):
        mod.step(modality_logits={"audio": torch.zeros(4, 3), "visual": torch.zeros(4, 5)},
                 labels=torch.zeros(4, dtype=torch.long))


def test_epoch_must_be_an_integer():
    mod = OGMGE(_enc())
    with pytest.raises(TypeError, match="epoch.*1.5"):
        mod.step(modality_logits={"audio": torch.zeros(4, 3), "visual": torch.zeros(4, 3)},
                 labels=torch.zeros(4, dtype=torch.long), epoch=1.5)


def test_shared_parameter_is_rejected():
    shared = nn.Conv2d(1, 2, 3)
    with pytest.raises(ValueError, match="shared"):
        OGMGE({"a": shared, "b": shared})


def test_encoder_type_is_checked():
    with pytest.raises(TypeError, match="encoder"):
        OGMGE({"a": 3, "b": nn.Conv2d(1, 2, 3)})


def test_modalities_must_match_encoders():
    mod = OGMGE(_enc())
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="without an encoder.*'text'"):
        mod.step(modality_logits={"audio": torch.zeros(4, 3), "visual": torch.zeros(4, 3),
                                  "text": torch.zeros(4, 3)}, labels=y)
    with pytest.raises(ValueError, match="lacks.*'visual'"):
        mod.step(modality_logits={"audio": torch.zeros(4, 3)}, labels=y)


def test_logits_labels_shape_mismatch():
    mod = OGMGE(_enc())
    with pytest.raises(ValueError, match="labels must have shape \\(4,\\)"):
        mod.step(modality_logits={"audio": torch.zeros(4, 3), "visual": torch.zeros(4, 3)},
                 labels=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="modality_logits\\['visual'\\]"):
        mod.step(modality_logits={"audio": torch.zeros(4, 3), "visual": torch.zeros(4)},
                 labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        mod.step(modality_logits={"audio": torch.zeros(4, 3), "visual": torch.zeros(4, 3)},
                 labels=torch.zeros(4))


def test_apply_without_scores():
    with pytest.raises(RuntimeError, match="no scores"):
        OGMGE(_enc()).apply_(epoch=0)


@pytest.mark.parametrize("kwargs,match", [({"q_base": 1.5}, "q_base"), ({"p_exe": -0.1}, "p_exe"),
                                          ({"lam": -1}, "lam")])
def test_opm_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OPM(**kwargs)
