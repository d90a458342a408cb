"""Decoder layers compiled once and reused (lazy_inline in graph mode, a traced graph per structure with
context.layerwise_compile): the reuse key follows each layer's structure as it is at compile time, and graph-mode and
layerwise training of a model whose layers differ (one with a LoRA adapter, one with a sliding window set after the
build, two plain ones sharing one graph) give PyNative's losses, and layerwise generation PyNative's tokens."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor

from mindformers.core.context import build_context
from mindformers.core.optim import AdamW
from mindformers.generation.timing import generation_times
from mindformers.models.decoder.layerwise import compile_layerwise
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.pet.lora import add_lora
from mindformers.tools import ConfigError, MindFormerConfig
from mindformers.wrapper import MFTrainOneStepCell

VOCAB, SEQ = 64, 8


def mixed_model(seq_length=SEQ):
    """4 layers: 0 has a LoRA adapter on wq, 3 a sliding window of 3 set after the build, 1 and 2 are alike."""
    np.random.seed(0)
    config = LlamaConfig(seq_length=seq_length, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=48,
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


def train_losses(steps=2, layerwise=False):
    """Losses of `steps` training steps, and with layerwise the number of layer graphs traced."""
    model = mixed_model()
    model.set_train(True)
    optimizer = AdamW(model.trainable_params(), learning_rate=1e-2, weight_decay=0.0)
    cell = MFTrainOneStepCell(model, optimizer, use_clip_grad=True, max_grad_norm=1.0)
    cell.set_train(True)
    graphs = compile_layerwise(model, cell) if layerwise else None
    ids = Tensor(np.random.default_rng(1).integers(1, VOCAB, (2, SEQ + 1)).astype(np.int32))
    losses = [float(cell(ids)[0].asnumpy()) for _ in range(steps)]
    return (losses, graphs.traces) if layerwise else losses


def test_graph_and_layerwise_training_with_reused_layers_match_pynative():
    eager = train_losses(steps=3)
    layerwise, traces = train_losses(steps=3, layerwise=True)
    np.testing.assert_allclose(layerwise, eager, rtol=1e-5)
    assert traces == 3  # layers 1 and 2 share one graph; 0 (LoRA) and 3 (sliding window) have their own
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = train_losses()
    np.testing.assert_allclose(graph, eager[:2], rtol=1e-5)
    assert eager[-1] < eager[0]


def test_layerwise_generation_gives_pynative_tokens_with_a_graph_per_structure_and_phase():
    """Generation through the layer graphs (cache tables, step tensors and transposed weight copies as inputs) gives
    plain PyNative's greedy tokens for left-padded rows: each layer's table is written, not the first layer's."""
    prompts = [[5, 6, 7, 8, 9], [3, 4, 11]]
    options = dict(max_new_tokens=6, do_sample=False, use_past=True)
    plain = mixed_model(seq_length=32)
    eager = plain.generate(prompts, **options)
    model = mixed_model(seq_length=32)
    graphs = compile_layerwise(model)
    assert model.generate(prompts, **options) == eager
    ours, theirs = (list(list(m.__dict__["_decoding_steps"].values())[0].cache.get_parameters())
                    for m in (model, plain))
    assert len(ours) == 8 and np.abs(ours[-1].asnumpy()).max() > 0
    for table, expected in zip(ours, theirs):  # each layer's own key and value tables, written in place
        np.testing.assert_allclose(table.asnumpy(), expected.asnumpy(), atol=1e-6)
    assert graphs.traces == 6  # (LoRA, plain, sliding window) x (prefill, decode); layers 1 and 2 share theirs
    assert generation_times(model).compile == pytest.approx(graphs.trace_seconds)  # predict logs them as compile
    assert model.generate(prompts, **options) == eager and graphs.traces == 6  # the next call runs them


@pytest.mark.parametrize("yaml,fragment", [
    ("context:\n  mode: 0\n  layerwise_compile: True\n", "expected context.mode 1 (PYNATIVE_MODE), got 0"),
    ("use_parallel: True\ncontext:\n  mode: 1\n  layerwise_compile: True\n", "expected use_parallel False"),
])
def test_layerwise_compile_outside_a_single_pynative_process_is_one_line_naming_the_key(tmp_path, yaml, fragment):
    path = tmp_path / "run.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError) as caught:
        build_context(MindFormerConfig(str(path)))
    assert str(caught.value).startswith(f"{path}: context.layerwise_compile: ")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
