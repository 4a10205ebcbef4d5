from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from tests.model.tiny import tiny_config  # noqa: E402
from tilesr.errors import TilesrError  # noqa: E402
from tilesr.model.unet import UNet, UNetConfig  # noqa: E402

# The reference tutorial's network (widths 32/64/128, bottleneck 256): about 1.75 M
# parameters and 5.8 GFLOP per 2x128x128 forward pass.
REFERENCE_PARAMS = 1.75e6
REFERENCE_FLOPS = 5.8e9


def _inputs(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(n, 1, h, w, generator=g)
    cond = torch.randn(n, 1, h, w, generator=g)
    t = torch.randint(0, 100, (n,), generator=g).float()
    return noisy, cond, t


def test_output_shape_matches_input_on_non_square_batch() -> None:
    model = UNet(tiny_config()).eval()
    noisy, cond, t = _inputs(3, 12, 20)
    with torch.no_grad():
        eps = model(noisy, cond, t)
    assert eps.shape == (3, 1, 12, 20)
    assert eps.dtype == torch.float32
    assert torch.isfinite(eps).all()


def test_size_multiple_is_two_to_the_number_of_downsamplings() -> None:
    assert UNet(tiny_config()).size_multiple == 4
    assert UNet(UNetConfig()).size_multiple == 8
    deep = UNetConfig(channels=(8, 8, 8, 8), attention=(False,) * 4, bottleneck=8)
    assert deep.size_multiple == 16


@pytest.mark.parametrize("shape", [(13, 16), (16, 18)])
def test_sizes_not_a_multiple_are_refused_with_the_size(shape: tuple[int, int]) -> None:
    model = UNet(tiny_config())
    noisy, cond, t = _inputs(1, *shape)
    with pytest.raises(TilesrError, match=f"{shape[0]}x{shape[1]}.*multiple of 4"):
        model(noisy, cond, t)


def test_mismatched_inputs_are_refused() -> None:
    model = UNet(tiny_config())
    noisy, cond, t = _inputs(2, 8, 8)
    with pytest.raises(TilesrError, match="shape"):
        model(noisy, cond[:1], t)
    with pytest.raises(TilesrError, match="t must have shape"):
        model(noisy, cond, t[:1])


def test_batch_entries_are_independent() -> None:
    # GroupNorm and attention act per sample: a batch gives what each entry gives alone
    model = UNet(tiny_config()).eval()
    noisy, cond, t = _inputs(3, 8, 16)
    with torch.no_grad():
        batched = model(noisy, cond, t)
        single = model(noisy[1:2], cond[1:2], t[1:2])
    torch.testing.assert_close(batched[1:2], single, rtol=1e-5, atol=1e-5)


def test_cond_is_the_first_input_channel() -> None:
    # silence the stem's second (noisy) input channel: the output must ignore noisy
    model = UNet(tiny_config()).eval()
    with torch.no_grad():
        model.stem.weight[:, 1] = 0
        noisy, cond, t = _inputs(1, 8, 8)
        a = model(noisy, cond, t)
        b = model(noisy + 5.0, cond, t)
        c = model(noisy, cond + 5.0, t)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_output_depends_on_the_timestep() -> None:
    model = UNet(tiny_config()).eval()
    noisy, cond, _ = _inputs(1, 8, 8)
    with torch.no_grad():
        a = model(noisy, cond, torch.tensor([3.0]))
        b = model(noisy, cond, torch.tensor([60.0]))
    assert not torch.allclose(a, b)


def test_gradients_reach_every_parameter() -> None:
    model = UNet(tiny_config())
    noisy, cond, t = _inputs(2, 8, 8)
    model(noisy, cond, t).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_default_parameter_count_is_close_to_the_reference() -> None:
    n_params = sum(p.numel() for p in UNet(UNetConfig()).parameters())
    assert abs(n_params - REFERENCE_PARAMS) <= 0.10 * REFERENCE_PARAMS, n_params


def test_default_flops_are_close_to_the_reference() -> None:
    # FlopCounterMode counts 2 FLOPs per multiply-accumulate (convolutions and matmuls)
    model = UNet(UNetConfig()).eval()
    noisy, cond, t = _inputs(1, 128, 128)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(noisy, cond, t)
    flops = counter.get_total_flops()
    assert abs(flops - REFERENCE_FLOPS) <= 0.15 * REFERENCE_FLOPS, flops


def test_config_round_trips_through_a_plain_dict() -> None:
    config = tiny_config()
    data = config.to_dict()
    assert isinstance(data["channels"], list)
    assert UNetConfig.from_dict(data) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"channelz": [8]}, "unknown unet config keys"),
        ({"channels": [8, 16], "attention": [True]}, "one flag per level"),
        ({"channels": [8, 12], "attention": [False, False]}, "divisible by groups"),
        ({"blocks": 0}, "blocks must be a positive integer"),
        (
            {"channels": [8, 16], "attention": [False, True], "bottleneck": 16, "heads": 3},
            "divisible by heads",
        ),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_configs_are_refused_by_name(data: dict, message: str) -> None:
    with pytest.raises(TilesrError, match=message):
        UNetConfig.from_dict(data)
