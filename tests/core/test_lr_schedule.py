import math

import pytest

from mindformers.core.lr import ConstantWarmUpLR, CosineWithWarmUpLR, LinearWithWarmUpLR
from mindformers.tools.errors import ConfigError


def test_cosine_with_warmup_steps():
    schedule = CosineWithWarmUpLR(1e-3, warmup_steps=4, total_steps=20, lr_end=1e-4)
    assert schedule.value_at(0) == pytest.approx(0.0)
    assert schedule.value_at(2) == pytest.approx(0.5e-3)
    assert schedule.value_at(4) == pytest.approx(1e-3)
    middle = 1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 8 / 16))
    assert schedule.value_at(12) == pytest.approx(middle, rel=1e-5)
    assert schedule.value_at(20) == pytest.approx(1e-4, rel=1e-5)
    assert schedule.value_at(25) == pytest.approx(1e-4, rel=1e-5)


def test_linear_with_warmup_ratio():
    schedule = LinearWithWarmUpLR(2e-3, warmup_ratio=0.1, total_steps=100)
    assert schedule.warmup_steps == 10
    assert schedule.value_at(5) == pytest.approx(1e-3)
    assert schedule.value_at(55) == pytest.approx(1e-3, rel=1e-5)
    assert schedule.value_at(100) == pytest.approx(0.0, abs=1e-9)


def test_constant_after_warmup():
    schedule = ConstantWarmUpLR(1e-3, warmup_steps=2, total_steps=10)
    assert [round(schedule.value_at(s), 6) for s in (0, 1, 2, 9)] == [0.0, 0.0005, 0.001, 0.001]


def test_total_steps_required():
    with pytest.raises(ConfigError, match="lr_schedule.total_steps"):
        CosineWithWarmUpLR(1e-3, warmup_steps=1, total_steps=-1)
