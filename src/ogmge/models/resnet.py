"""ResNet-18 (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

Written here because torchvision does not install beside our CPU torch. The
layout is the standard ImageNet ResNet-18 (7x7 stem, max-pool, four stages of
two BasicBlocks) without the final pooling and classifier: ``forward`` returns
the last feature map, and the encoders pool it. ``width`` scales every stage
(base 64 -> 64/128/256/512 channels); any input resolution is accepted.
Initialisation as in the standard ResNet: Kaiming-normal conv kernels
(``fan_out``, ReLU), BatchNorm weight 1 and bias 0.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..validation import check_positive_int


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016, Fig. 2)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 trunk returning the final feature map ``(B, 8*width, H/32, W/32)``.

    Without a classifier it has 11,176,512 parameters for 3 input channels and
    11,170,240 for 1 channel at ``width=64``.
    """

    def __init__(self, *, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.width = check_positive_int("width", width)
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        planes = [width, 2 * width, 4 * width, 8 * width]
        self.layer1 = self._stage(width, planes[0], stride=1)
        self.layer2 = self._stage(planes[0], planes[1], stride=2)
        self.layer3 = self._stage(planes[1], planes[2], stride=2)
        self.layer4 = self._stage(planes[2], planes[3], stride=2)
        self.out_channels = planes[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, *, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
