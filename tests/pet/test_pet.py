"""PET on a tiny Llama in PyNative mode: masking, LoRA freezing, merge, adapter checkpoints, prefix tuning."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, ops

from mindformers.core.loss import CrossEntropyLoss
from mindformers.core.optim import AdamW
from mindformers.models.decoder import choices
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.pet import apply_pet, is_pet_parameter
from mindformers.pet.checkpoint import load_finetune_weights, trainable_checkpoint_items
from mindformers.pet.merge import main as merge_main
from mindformers.pet.merge import merge_lora_arrays
from mindformers.tools.errors import ConfigError
from mindformers.wrapper import MFTrainOneStepCell

VOCAB, SEQ = 50, 8
LORA = {"pet_type": "lora", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ".*wq|.*wv"}


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def tiny_model(seed=0, pet=None):
    np.random.seed(seed)
    config = LlamaConfig(seq_length=SEQ, hidden_size=32, num_layers=2, num_heads=4, n_kv_heads=2, vocab_size=VOCAB,
                         intermediate_size=64, compute_dtype="float32", softmax_compute_type="float32",
                         rotary_dtype="float32", param_init_type="float32")
    model = LlamaForCausalLM(config)
    if pet:
        apply_pet(model, pet)
    return model


def values(model):
    return {p.name: p.asnumpy().copy() for p in model.get_parameters()}


def labelled_batch(seed=1):
    """Rows of SEQ + 1 tokens with a 'prompt' (ignored), a 'reply' (learned) and padding (ignored)."""
    ids = np.random.default_rng(seed).integers(3, VOCAB, (4, SEQ + 1)).astype(np.int32)
    labels = np.full_like(ids, -100)
    labels[:, 4:7] = ids[:, 4:7]
    ids[:, 7:] = 0
    return Tensor(ids), Tensor(labels)


def train(model, steps=3, lr=1e-2):
    model.set_train(True)
    optimizer = AdamW(model.trainable_params(), learning_rate=lr, weight_decay=0.1)
    cell = MFTrainOneStepCell(model, optimizer, use_clip_grad=True)
    ids, labels = labelled_batch()
    losses = [float(cell(ids, labels)[0].asnumpy()) for _ in range(steps)]
    model.set_train(False)
    return optimizer, losses


def test_masked_positions_contribute_zero_gradient():
    logits = Tensor(np.random.default_rng(0).normal(size=(2, SEQ, VOCAB)).astype(np.float32))
    targets = np.random.default_rng(1).integers(0, VOCAB, (2, SEQ)).astype(np.int32)
    mask = np.zeros((2, SEQ), bool)
    mask[:, 3:6] = True
    targets[~mask] = -100
    loss_fn = CrossEntropyLoss()
    grad = ops.grad(lambda x: loss_fn(x, Tensor(targets), Tensor(mask)))(logits).asnumpy()
    assert (grad[~mask] == 0).all() and (np.abs(grad[mask]).sum(-1) > 0).all()
    # and the model's loss is the mean cross-entropy over the learned (reply) targets only
    model = tiny_model()
    ids, labels = labelled_batch()
    model.set_train(False)
    logits = model(Tensor(ids.asnumpy()[:, :-1])).asnumpy().astype(np.float64)
    model.set_train(True)
    loss = float(model(ids, labels).asnumpy())
    targets = labels.asnumpy()[:, 1:]
    learned = targets != -100
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(logp, np.where(learned, targets, 0)[..., None], -1)[..., 0][learned].mean()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_lora_trains_only_adapters_and_base_stays_bit_identical():
    model = tiny_model(pet=LORA)
    base = values(model)
    optimizer, losses = train(model)
    assert {p.name for p in optimizer.parameters} == {n for n in base if is_pet_parameter(n)}
    assert len(optimizer.parameters) == 2 * 2 * 2  # (wq, wv) x (a, b) x 2 layers
    after = values(model)
    for name in base:
        if is_pet_parameter(name):
            continue
        assert after[name].tobytes() == base[name].tobytes(), name
    assert any(not np.array_equal(after[n], base[n]) for n in base if n.endswith("lora_b"))
    assert losses[-1] < losses[0]


def test_merged_logits_equal_base_plus_lora(tmp_path):
    model = tiny_model(pet=LORA)
    train(model)
    ids = Tensor(labelled_batch()[0].asnumpy()[:, :-1])
    lora_logits = model(ids).asnumpy()
    merged, pairs = merge_lora_arrays(values(model), LORA["lora_alpha"])
    assert pairs == 4
    plain = tiny_model(seed=5)
    ms.load_param_into_net(plain, {n: ms.Parameter(Tensor(v), name=n) for n, v in merged.items()}, strict_load=True)
    plain.set_train(False)
    np.testing.assert_allclose(plain(ids).asnumpy(), lora_logits, atol=1e-5, rtol=1e-5)
    # the CLI on a full checkpoint (base + adapters) gives the same weights
    ms.save_checkpoint(model, str(tmp_path / "lora.ckpt"))
    merge_main(["--lora_alpha", "8", "--load_checkpoint", str(tmp_path / "lora.ckpt"),
                "--output_path", str(tmp_path / "merged.ckpt")])
    written = ms.load_checkpoint(str(tmp_path / "merged.ckpt"))
    assert sorted(written) == sorted(merged)
    assert all(np.allclose(written[n].asnumpy(), merged[n], atol=1e-7) for n in merged)


def test_adapters_only_checkpoint_loads_over_the_base(tmp_path):
    base_model = tiny_model()
    ms.save_checkpoint(base_model, str(tmp_path / "base.ckpt"))
    model = tiny_model(seed=3, pet=LORA)
    load_finetune_weights(model, str(tmp_path / "base.ckpt"))  # a base checkpoint has no adapters: fine
    train(model)
    ms.save_checkpoint(trainable_checkpoint_items(model), str(tmp_path / "adapter.ckpt"))
    assert all(is_pet_parameter(n) for n in ms.load_checkpoint(str(tmp_path / "adapter.ckpt")))
    ids = Tensor(labelled_batch()[0].asnumpy()[:, :-1])
    expected = model(ids).asnumpy()
    fresh = tiny_model(seed=7, pet=dict(LORA, adapter_checkpoint=str(tmp_path / "adapter.ckpt")))
    load_finetune_weights(fresh, str(tmp_path / "base.ckpt"))
    fresh.set_train(False)
    np.testing.assert_array_equal(fresh(ids).asnumpy(), expected)
    with pytest.raises(ConfigError, match="has no tensor"):
        load_finetune_weights(tiny_model(pet=LORA), str(tmp_path / "adapter.ckpt"))


@pytest.mark.parametrize("mid_dim", [0, 16])
def test_prefix_tuning_trains_only_prefix_parameters(mid_dim):
    model = tiny_model(pet={"pet_type": "prefixtuning", "prefix_token_num": 3, "mid_dim": mid_dim})
    ids = Tensor(labelled_batch()[0].asnumpy()[:, :-1])
    model.set_train(False)
    plain = tiny_model()
    plain.set_train(False)
    assert not np.allclose(model(ids).asnumpy(), plain(ids).asnumpy())  # the prefixes are attended to
    base = values(model)
    optimizer, losses = train(model)
    assert optimizer.parameters and all("prefix_" in p.name for p in optimizer.parameters)
    after = values(model)
    for name in base:
        changed = not np.array_equal(after[name], base[name])
        assert changed == ("prefix_" in name), name
    assert losses[-1] < losses[0]


def test_prefixes_are_attended_where_long_sequences_take_blockwise_attention(monkeypatch):
    """At lengths where the plain model attends blockwise (or through the fused CPU kernel), a prefixed layer still
    attends to its prefixes: its logits are those of the exact path."""
    pet = {"pet_type": "prefixtuning", "prefix_token_num": 3, "mid_dim": 0}
    ids = Tensor(labelled_batch()[0].asnumpy()[:, :-1])
    exact = tiny_model(pet=pet)
    exact.set_train(False)
    monkeypatch.setattr(choices, "FUSED_CPU_MIN_SEQ", 2)
    monkeypatch.setattr(choices, "BLOCKWISE_MIN_SEQ", 2)
    assert tiny_model().model.layers[0].attention.blockwise is not None  # this length now takes blockwise
    long_path = tiny_model(pet=pet)
    long_path.set_train(False)
    np.testing.assert_allclose(long_path(ids).asnumpy(), exact(ids).asnumpy(), rtol=1e-5, atol=1e-5)


def test_pet_config_errors():
    with pytest.raises(ConfigError, match=r"pet_config.lora_rnk: unknown key.*did you mean 'lora_rank'"):
        tiny_model(pet=dict(LORA, lora_rnk=2))
    with pytest.raises(ConfigError, match="target_modules: '.*wqkv' matches no linear layer"):
        tiny_model(pet=dict(LORA, target_modules=".*wqkv"))
    with pytest.raises(ConfigError, match="pet_type: expected one of lora, prefixtuning"):
        tiny_model(pet={"pet_type": "adapter"})


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
@pytest.mark.parametrize("pet", [LORA, {"pet_type": "prefixtuning", "prefix_token_num": 3, "mid_dim": 0}])
def test_generation_uses_the_adapters(pet, mode):
    """Cached generation (prefill + decode steps) continues prompts exactly as greedy decoding on full forwards."""
    model = tiny_model(pet=pet)
    train(model)
    prompt = labelled_batch()[0].asnumpy()[:2, :3].tolist()
    ms.set_context(mode=mode)
    try:
        generated = model.generate(prompt, max_new_tokens=4, do_sample=False, num_beams=1, eos_token_id=VOCAB - 1)
        for row, out in zip(prompt, generated):
            tokens = list(row)
            while len(tokens) < len(out):
                grid = np.zeros((1, SEQ), np.int32)  # right padding leaves earlier logits alone: one graph compile
                grid[0, :len(tokens)] = tokens
                tokens.append(int(model(Tensor(grid)).asnumpy()[0, len(tokens) - 1].argmax()))
            assert len(out) > len(row) and list(out) == tokens
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
