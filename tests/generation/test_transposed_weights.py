"""Generation's transposed weight copies (CPU): the same tokens as without them, never part of the model, and
refreshed after the weights change through training or a checkpoint load. PyNative and graph mode."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from mindformers.checkpoint.checkpoint_io import load_weights
from mindformers.core.optim import AdamW
from mindformers.generation.transposed_weights import contiguous_transpose
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.models.modules import Linear
from mindformers.wrapper import MFTrainOneStepCell

VOCAB = 40
PROMPTS = [[3, 4, 5, 6], [7, 8]]


@pytest.fixture(autouse=True, scope="module", params=[ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def mode(request):
    ms.set_context(mode=request.param, device_target="CPU")
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def tiny_model(tie_word_embeddings=False, **config):
    np.random.seed(3)
    return LlamaForCausalLM(LlamaConfig(seq_length=16, hidden_size=32, num_layers=2, num_heads=4, n_kv_heads=2,
                                        vocab_size=VOCAB, intermediate_size=64, compute_dtype="float32",
                                        initializer_range=0.2, tie_word_embeddings=tie_word_embeddings, **config))


def greedy_by_full_forwards(model, prompt, new):
    """The reference: argmax of the plain forward (which multiplies by the weights themselves), token by token. The
    tokens sit in a fixed grid right-padded to seq_length (causal: padding after a token does not change its
    logits), so graph mode compiles the forward once."""
    tokens = list(prompt)
    for _ in range(new):
        grid = np.zeros((1, 16), np.int32)
        grid[0, :len(tokens)] = tokens
        tokens.append(int(model(Tensor(grid)).asnumpy()[0, len(tokens) - 1].argmax()))
    return tokens


def generate(model, **options):
    return model.generate(PROMPTS, max_new_tokens=6, eos_token_id=[], **options)


def assert_follows_weights(model):
    got = generate(model)
    assert got == [greedy_by_full_forwards(model, p, 6) for p in PROMPTS]
    return got


@pytest.mark.parametrize("tied", [False, True], ids=["lm_head", "tied_head"])
def test_copies_give_the_same_tokens_and_stay_outside_the_model(tied):
    model = tiny_model(tied)
    names = [p.name for p in model.get_parameters()]
    assert generate(model, transposed_weights=False) == assert_follows_weights(model)
    assert [p.name for p in model.get_parameters()] == names
    assert all(cell.weight_t is None for _, cell in model.cells_and_names() if isinstance(cell, Linear))
    copied = [copy.name for copy in model.__dict__["_transposed_weights"].copies]
    # a tied head multiplies by the embedding table: generation keeps its (hidden, vocab) copy too
    assert ("model.tok_embeddings.embedding_weight.transposed" in copied) == tied
    assert model.weight_t is None


def test_model_config_turns_the_copies_off():
    """model_config.transposed_weights (a YAML key, as predict reads it) is generate()'s default: False makes no
    copies (their memory and, for some shapes, a slower decode: README's Performance) and gives the same tokens."""
    model = tiny_model(transposed_weights=False)
    assert assert_follows_weights(model)
    assert "_transposed_weights" not in model.__dict__
    generate(model, transposed_weights=True)  # a call's own option still wins over the config
    assert "_transposed_weights" in model.__dict__


def test_copies_follow_training_steps():
    model = tiny_model()
    before = generate(model)
    model.set_train(True)
    step = MFTrainOneStepCell(model, AdamW(model.trainable_params(), learning_rate=0.05))
    ids = Tensor(np.random.default_rng(0).integers(3, VOCAB, (2, 17)).astype(np.int32))
    for _ in range(3):
        step(ids)
    model.set_train(False)
    assert generate(model) != before  # the training changed what the model says...
    assert_follows_weights(model)  # ...and generation says it too


def test_copies_follow_a_checkpoint_load():
    model = tiny_model()
    before = generate(model)
    rng = np.random.default_rng(5)
    changed = {p.name: ms.Parameter(Tensor((p.asnumpy() + rng.normal(0, 0.3, p.shape)).astype(np.float32)),
                                    name=p.name) for p in model.get_parameters()}
    load_weights(model, changed, "changed.ckpt")
    assert generate(model) != before
    assert_follows_weights(model)


def test_the_banded_transpose_is_the_transpose():
    values = np.random.default_rng(1).standard_normal((2500, 7)).astype(np.float32)  # 2 whole bands and a part
    out = contiguous_transpose(values)
    assert out.flags["C_CONTIGUOUS"] and out.dtype == np.float32
    np.testing.assert_array_equal(out, values.T)
