"""The inference build from a checkpoint (weights_loaded_after_build): weights stay unallocated until the checkpoint
fills them, the layers share one copy of the rotary tensors, and the model then generates what the model that saved
the weights does."""
import numpy as np
import mindspore as ms
from mindspore import Tensor
from mindspore.common.initializer import Normal, initializer

from mindformers import LlamaConfig, LlamaForCausalLM
from mindformers.checkpoint.checkpoint_io import load_weights
from mindformers.models.modules.shape_only import (parameter_of, parameter_sharing, shape_only,
                                                   weights_loaded_after_build)


def tiny_config():
    return LlamaConfig(seq_length=16, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48, vocab_size=64,
                       compute_dtype="float32", param_init_type="float32")


def test_weights_stay_unallocated_until_the_checkpoint_fills_them():
    np.random.seed(0)
    source = LlamaForCausalLM(tiny_config())
    with weights_loaded_after_build():
        built = LlamaForCausalLM(tiny_config())
    drawn = [p.name for p in built.get_parameters() if p.has_init]
    assert any(name.endswith("embedding_weight") for name in drawn) and any("wq" in name for name in drawn)
    load_weights(built, {p.name: p for p in source.get_parameters()}, "source")
    assert not any(p.has_init for p in built.get_parameters())
    for ours, theirs in zip(built.get_parameters(), source.get_parameters()):
        np.testing.assert_array_equal(ours.asnumpy(), theirs.asnumpy())
    first, second = (layer.attention.position for layer in built.model.layers)
    assert first.cos is second.cos  # one copy of the rotary tensors for every layer
    prompts = [[5, 6, 7], [9, 3]]
    assert built.generate(prompts, max_new_tokens=3) == source.generate(prompts, max_new_tokens=3)


def test_a_parameter_made_for_host_values_holds_their_memory():
    """What generation's transposed weight copies are made with: no second copy of the values."""
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    param = parameter_sharing(Tensor.from_numpy(values), "copy", requires_grad=False)
    assert (param.name, param.requires_grad, param.shape, param.has_init) == ("copy", False, (2, 3), False)
    values[0, 1] = 7.0
    np.testing.assert_array_equal(param.asnumpy(), values)


def test_a_parameter_of_a_lazy_initializer_stays_unallocated():
    with shape_only():
        param = parameter_of(initializer(Normal(0.02), (4, 2), ms.float32), "lazy")
    assert param.has_init and param.shape == (4, 2)
    values = np.ones((2, 2), np.float32)
    shared = parameter_of(Tensor.from_numpy(values), "shared")
    values[1, 1] = 5.0
    assert float(shared.asnumpy()[1, 1]) == 5.0
