"""ImageNet weights from a local torchvision-style file."""

from __future__ import annotations

import pytest
import torch

from murid_engine.errors import UserError
from murid_engine.models.pretrained import load_pretrained
from murid_engine.models.resnet import BACKBONES

# Sizes of torchvision's ImageNet ResNets without their 1000-class fc layer (weights + biases
# of convolutions and BatchNorms): a backbone in torchvision's layout has exactly these.
TORCHVISION_BACKBONE_PARAMS = {"resnet18": 11_176_512, "resnet50": 23_508_032, "resnet101": 42_500_160}


@pytest.mark.parametrize("name", sorted(TORCHVISION_BACKBONE_PARAMS))
def test_backbones_have_torchvision_sizes_and_key_names(name):
    net = BACKBONES[name]()
    params = sum(p.numel() for p in net.parameters())
    assert params == TORCHVISION_BACKBONE_PARAMS[name]
    keys = set(net.state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.running_mean", "layer4.1.bn2.bias"):
        assert key in keys


def test_a_torchvision_file_loads_and_reports_what_it_skipped(tmp_path):
    torch.manual_seed(0)
    source = BACKBONES["resnet18"]()
    state = {f"module.{k}": v.clone() for k, v in source.state_dict().items()}  # a DataParallel save
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    state["module.extra.weight"] = torch.zeros(3)
    del state["module.layer4.1.bn2.bias"]
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save({"state_dict": state}, path)

    target = BACKBONES["resnet18"]()
    report = load_pretrained(target, path)
    assert report.dropped_classifier == 2
    assert report.unexpected == ["extra.weight"]
    assert report.missing == ["layer4.1.bn2.bias"]
    assert report.loaded == 120 - 1
    assert torch.equal(target.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert "missing (left at random init): layer4.1.bn2.bias" in report.summary()


def test_wrong_or_unreadable_files_give_one_sentence(tmp_path):
    net = BACKBONES["resnet18"]()
    with pytest.raises(UserError, match="does not exist"):
        load_pretrained(net, tmp_path / "nope.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="not a readable PyTorch weights file"):
        load_pretrained(net, bad)
    other = tmp_path / "resnet50.pth"
    torch.save(BACKBONES["resnet50"]().state_dict(), other)
    with pytest.raises(UserError, match="'conv1.weight'|has shape"):
        load_pretrained(net, other)
