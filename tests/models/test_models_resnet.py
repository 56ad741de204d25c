import pytest
import torch
from torch import nn

from ogmge.models import AudioEncoder, ResNet18, VisualEncoder


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet18_parameter_counts_match_the_standard_model():
    # torchvision's resnet18 has 11,689,512 parameters; its fc (512*1000 + 1000) is not ours.
    assert count(ResNet18(in_channels=3)) == 11_689_512 - 513_000 == 11_176_512
    assert count(ResNet18(in_channels=1)) == 11_170_240


def test_init_is_kaiming_fan_out_and_unit_batchnorm():
    torch.manual_seed(0)
    net = ResNet18(in_channels=3, width=64)
    w = net.layer4[0].conv1.weight  # 512 x 256 x 3 x 3
    expected_std = (2.0 / (w.shape[0] * 9)) ** 0.5
    assert abs(w.std().item() / expected_std - 1) < 0.02
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


@pytest.mark.parametrize("size", [(1, 1), (17, 45), (64, 64)])
def test_any_resolution_and_width(size):
    net = ResNet18(in_channels=2, width=4)
    out = net(torch.randn(2, 2, *size))
    assert out.shape[:2] == (2, 32)


def test_paper_encoders_pool_to_8_width_features():
    audio = AudioEncoder(width=4)
    visual = VisualEncoder(width=4)
    assert audio.out_dim == visual.out_dim == 32
    assert AudioEncoder().out_dim == 512
    assert audio(torch.randn(3, 1, 40, 30)).shape == (3, 32)
    assert visual(torch.randn(3, 2, 3, 24, 24)).shape == (3, 32)
    with pytest.raises(ValueError, match="width"):
        ResNet18(width=0)
