"""Decoder layers compiled once and reused (lazy_inline): the reuse key follows each layer's structure as it is at
compile time, and graph-mode training of a model whose layers differ (one with a LoRA adapter, one with a sliding
window set after the build, two plain ones sharing one graph) gives PyNative's losses."""
import numpy as np
import mindspore as ms
from mindspore import Tensor

from mindformers.core.optim import AdamW
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.pet.lora import add_lora
from mindformers.wrapper import MFTrainOneStepCell

VOCAB, SEQ = 64, 8


def mixed_model():
    """4 layers: 0 has a LoRA adapter on wq, 3 a sliding window of 3 set after the build, 1 and 2 are alike."""
    np.random.seed(0)
    config = LlamaConfig(seq_length=SEQ, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=48,
                         vocab_size=VOCAB, compute_dtype="float32", softmax_compute_type="float32",
                         rotary_dtype="float32", param_init_type="float32", layernorm_compute_type="float32")
    model = LlamaForCausalLM(config)
    layers = model.model.layers
    add_lora(layers[0].attention.wq, rank=2, alpha=4, dropout=0.0)
    layers[0].attention.wq.lora_b.set_data(Tensor(np.full((32, 2), 0.05, np.float32)))  # B = 0 would hide A
    layers[3].attention.sliding_window = 3
    return model


def test_reuse_key_tells_changed_layers_apart():
    model = mixed_model()
    assert len({layer.cell_init_args for layer in model.model.layers}) == 4  # inference: a graph per layer
    model.set_train(True)
    keys = [layer.cell_init_args for layer in model.model.layers]
    assert keys[1] == keys[2]
    assert len({keys[0], keys[1], keys[3]}) == 3
    model.model.layers[2].recompute()
    model.model.layers[1].attention.wk.weight.requires_grad = False
    assert len({layer.cell_init_args for layer in model.model.layers}) == 4


def train_losses(steps=2):
    model = mixed_model()
    model.set_train(True)
    optimizer = AdamW(model.trainable_params(), learning_rate=1e-2, weight_decay=0.0)
    cell = MFTrainOneStepCell(model, optimizer, use_clip_grad=True, max_grad_norm=1.0)
    cell.set_train(True)
    ids = Tensor(np.random.default_rng(1).integers(1, VOCAB, (2, SEQ + 1)).astype(np.int32))
    return [float(cell(ids)[0].asnumpy()) for _ in range(steps)]


def test_graph_training_with_reused_layers_matches_pynative():
    eager = train_losses()
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = train_losses()
    np.testing.assert_allclose(graph, eager, rtol=1e-5)
    assert eager[-1] < eager[0]
