"""Llama 3.1 rope scaling (extend_method LLAMA3): the frequency bands, the config checks and the HF mapping.
Parity of whole models against transformers is the "llama31" kind of tests/models/test_hf_parity.py."""
import os

import numpy as np
import pytest

from mindformers.models.llama import LlamaConfig
from mindformers.models.llama.convert_mapping import LLAMA
from mindformers.models.modules.rotary import llama3_scaled, rotary_tables
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerConfig
from tests.e2e.helpers import REPO

SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def test_short_wavelengths_kept_long_ones_slowed_and_the_band_between_blended():
    inv_freq = np.array([1.0, 0.1, 0.01])  # wavelengths 6.3 (< 64/4), 62.8 (between), 628 (> 64/1)
    scaled = llama3_scaled(inv_freq, **SCALING)
    assert scaled[0] == inv_freq[0]
    assert scaled[2] == pytest.approx(inv_freq[2] / 8.0)
    blend = (64 / (2 * np.pi / 0.1) - 1.0) / 3.0
    assert scaled[1] == pytest.approx((1 - blend) * 0.1 / 8 + blend * 0.1)
    assert inv_freq[1] / 8 < scaled[1] < inv_freq[1]


def test_linear_scaling_still_divides_positions():
    cos, _ = rotary_tables(8, 16, 10000.0, 2.0)
    plain, _ = rotary_tables(8, 32, 10000.0)
    np.testing.assert_allclose(cos[4], plain[2], rtol=1e-6)


def test_llama3_1_config_builds_from_the_shipped_yaml():
    config = MindFormerConfig(os.path.join(REPO, "configs", "llama3", "predict_llama3_1_8b.yaml"))
    values = dict(config.model.model_config)
    values.pop("type")
    llama = LlamaConfig(**values)
    assert llama.scaling_factor == {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192.0}


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(extend_method="LLAMA3", scaling_factor={"factor": 8.0}), "missing low_freq_factor"),
    (dict(extend_method="LLAMA3", scaling_factor=dict(SCALING, high_freq_factor=0.5)), "high_freq_factor >"),
    (dict(scaling_factor=dict(SCALING)), "expected a positive number"),
    (dict(scaling_factor=0), "expected a positive number"),
])
def test_bad_rope_scaling_is_one_line_naming_the_key(kwargs, fragment):
    with pytest.raises(ConfigError, match="model.model_config.scaling_factor") as error:
        LlamaConfig(num_layers=1, hidden_size=32, num_heads=4, vocab_size=64, **kwargs)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_hf_config_round_trip_keeps_llama3_scaling():
    ours = LlamaConfig(num_layers=1, hidden_size=32, num_heads=4, vocab_size=64, extend_method="LLAMA3",
                       scaling_factor=dict(SCALING))
    hf = LLAMA.config_to_hf(ours, "F32")
    assert hf["rope_parameters"]["rope_type"] == "llama3" and hf["rope_parameters"]["factor"] == 8.0
    back = LLAMA.config_from_hf(hf, "F32")
    assert back["extend_method"] == "LLAMA3" and back["scaling_factor"] == ours.scaling_factor
    old_style = dict(hf, rope_parameters=None, rope_scaling=dict(SCALING, rope_type="llama3"))
    assert LLAMA.config_from_hf(old_style, "F32")["scaling_factor"] == ours.scaling_factor
