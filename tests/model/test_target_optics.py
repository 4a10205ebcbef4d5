"""The target-optics input: the plane the engine's graph fixes, and its checks."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from tests.model.tiny import tiny_config, tiny_metadata  # noqa: E402
from tilesr.errors import TilesrError  # noqa: E402
from tilesr.metadata import TARGET_OPTICS_PLANE  # noqa: E402
from tilesr.model.target_optics import FixedTargetOptics, engine_network  # noqa: E402
from tilesr.model.unet import UNet  # noqa: E402


def _network() -> UNet:
    torch.manual_seed(0)
    return UNet(replace(tiny_config(), target_optics_input=True)).eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    noisy, cond = (torch.randn(2, 1, 8, 12, generator=g) for _ in range(2))
    return noisy, cond, torch.tensor([3.0, 40.0])


@pytest.mark.parametrize("optics", sorted(TARGET_OPTICS_PLANE))
def test_the_fixed_plane_is_the_one_training_gives(optics: str) -> None:
    network = _network()
    noisy, cond, t = _inputs()
    plane = torch.full_like(cond, TARGET_OPTICS_PLANE[optics])
    with torch.inference_mode():
        expected = network(noisy, torch.cat([cond, plane], dim=1), t)
        got = engine_network(
            network, replace(tiny_metadata(tiny_config()), target_optics=optics), "m"
        )(noisy, cond, t)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_the_plane_changes_the_output() -> None:
    network = _network()
    noisy, cond, t = _inputs()
    with torch.inference_mode():
        same = FixedTargetOptics(network, "same")(noisy, cond, t)
        sharper = FixedTargetOptics(network, "sharper")(noisy, cond, t)
    assert not torch.allclose(same, sharper)


def test_a_network_without_the_input_is_returned_as_it_is() -> None:
    network = UNet(tiny_config())
    assert engine_network(network, tiny_metadata(tiny_config()), "m") is network


def test_network_and_metadata_must_agree() -> None:
    with pytest.raises(TilesrError, match="names no target_optics"):
        engine_network(_network(), tiny_metadata(tiny_config()), "m")
    metadata = replace(tiny_metadata(tiny_config()), target_optics="same")
    with pytest.raises(TilesrError, match=r"trained with data\.target_optics"):
        engine_network(UNet(tiny_config()), metadata, "m")


def test_the_unet_takes_one_more_conditioning_channel() -> None:
    network = _network()
    noisy, cond, t = _inputs()
    with pytest.raises(Exception, match=r"\(N, 2, H, W\)"):
        network(noisy, cond, t)
