"""utils.train.ema: the exponential moving average of the trained weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from utils.train.ema import WeightEMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    model[1].requires_grad_(False)  # frozen: never averaged
    return model


def test_ema_follows_the_weights_with_a_warmed_up_decay():
    model = _model()
    ema = WeightEMA(model, decay=0.9)
    assert set(ema.shadow) == {"0.weight", "0.bias"}
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)  # first update: decay min(0.9, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.shadow["0.weight"], d * start + (1 - d) * (start + 1.0))
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.shadow["0.weight"], start + 1.0)


def test_applied_swaps_the_average_in_and_the_weights_back():
    model = _model()
    ema = WeightEMA(model, decay=0.5)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    for value in ema.shadow.values():
        value.fill_(3.0)
    with ema.applied(model):
        assert torch.all(model[0].weight == 3.0) and torch.all(model[0].bias == 3.0)
        torch.testing.assert_close(model[1].weight, own["1.weight"])  # frozen: untouched
    for key, value in model.state_dict().items():
        assert torch.equal(value, own[key]), key


def test_state_round_trip_and_mismatch():
    model = _model()
    ema = WeightEMA(model, decay=0.99)
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    ema.update(model)
    again = WeightEMA(_model(), decay=0.5)
    again.load_state_dict(ema.state_dict())
    assert again.decay == 0.99 and again.updates == 1
    torch.testing.assert_close(again.shadow["0.weight"], ema.shadow["0.weight"])
    other = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="does not match"):
        WeightEMA(other, 0.9).load_state_dict({**ema.state_dict(), "shadow": {"x": torch.ones(1)}})


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="EMA decay must be in"):
        WeightEMA(_model(), decay)
