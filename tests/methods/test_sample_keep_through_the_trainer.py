"""The trainer's fused loss uses only the samples OPM kept (three modalities, real masks):
a sample that lost every modality must not reach the loss. Two modalities cannot show it
(the weaker one has q = 0, so every sample keeps it); with three, OPM fed ratios above 1 for
all of them drops some samples entirely."""

from __future__ import annotations

import torch

from ogmge.contracts import ModalitySpec
from ogmge.methods import OPMMethod
from ogmge.modulation import OPM
from ogmge.training import DataBundle, Trainer
from support.training_standins import tiny_config

NAMES = ("a", "b", "c")


class ThreeModalities(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        self.x = {m: torch.randn(n, 5, generator=g) + self.labels[:, None] * (i + 1) * 0.5
                  for i, m in enumerate(NAMES)}
        self.modalities = {m: ModalitySpec(m, "vector", (5,)) for m in NAMES}
        self.num_classes = 3
        self.class_names = ["x", "y", "z"]
        self.targets = self.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"inputs": {m: self.x[m][i] for m in NAMES}, "label": int(self.labels[i])}


class GivenRatiosOPM(OPM):
    """OPM drawing its masks from fixed ratios (all dominant), so some samples lose every modality."""

    def __init__(self, ratios, **kwargs):
        super().__init__(**kwargs)
        self.given = {k: torch.tensor(v) for k, v in ratios.items()}

    def sample(self, ratios, batch_size, device=None, **kwargs):
        return super().sample(self.given, batch_size, device=device, **kwargs)


def test_trainer_loss_is_the_mean_over_kept_samples_only(tmp_path):
    bundle = DataBundle(ThreeModalities(32, 1), ThreeModalities(9, 2), ThreeModalities(9, 3))
    method = OPMMethod(GivenRatiosOPM({"a": 1.8, "b": 1.4, "c": 1.2}, p_exe=1.0, start_epoch=0, seed=4))
    cfg = tiny_config(tmp_path, out=None, batch_size=32, model_options={"builder": "generic", "hidden": 4,
                                                                          "out_dim": 4})
    trainer = Trainer(cfg, datasets=bundle, method=method)
    trainer.net.train()
    step = trainer._train_step(next(iter(trainer.train_loader)), 0)
    keep = method.sample_keep
    assert keep is not None and 0 < int((~keep).sum()) < 32
    z, y = step.logits.double(), step.labels
    per = torch.logsumexp(z, dim=1) - z.gather(1, y.view(-1, 1)).squeeze(1)  # CE by hand, float64
    by_hand = per[keep].sum() / keep.sum()
    assert abs(float(step.loss) - float(by_hand)) <= 1e-6
    assert abs(float(per.mean()) - float(by_hand)) > 1e-4  # the full-batch mean: 100x the tolerance away
