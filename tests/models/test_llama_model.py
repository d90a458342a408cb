"""LlamaForCausalLM: the training loss, parameter layouts, recompute, and one graph-mode run showing graph loss ==
PyNative loss. Logits parity with transformers (through the real weight converter) is in test_hf_parity.py."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor

from mindformers.models.llama import LlamaConfig, LlamaForCausalLM

VOCAB, HIDDEN, SEQ = 96, 32, 12


def our_config(**overrides):
    values = dict(seq_length=SEQ, hidden_size=HIDDEN, num_layers=2, num_heads=4, n_kv_heads=None,
                  intermediate_size=48, vocab_size=VOCAB, compute_dtype="float32", softmax_compute_type="float32",
                  rotary_dtype="float32", param_init_type="float32", layernorm_compute_type="float32",
                  rms_norm_eps=1e-6, pad_token_id=0, ignore_token_id=-100)
    values.update(overrides)
    return LlamaConfig(**values)


def build(config, seed=0, train=False, **kwargs):
    np.random.seed(seed)
    model = LlamaForCausalLM(config, **kwargs)
    model.set_train(train)
    return model


# ---------------------------------------------------------------- training loss

def real_inputs(ids, pad_id):
    """True before the run of pad_id that ends each row (the row's padding)."""
    real = ids != pad_id
    last = np.where(real.any(1), ids.shape[1] - 1 - np.argmax(real[:, ::-1], axis=1), -1)
    return np.arange(ids.shape[1])[None, :] <= last[:, None]


def reference_loss(model, ids, labels, ignore_id, pad_id):
    """Mean NLL of targets labels[:, 1:] from logits of ids[:, :-1], skipping ignored labels and padding inputs."""
    model.set_train(False)
    logits = model(Tensor(ids[:, :-1])).asnumpy().astype(np.float64)
    model.set_train(True)
    targets = labels[:, 1:]
    keep = (targets != ignore_id) & real_inputs(ids, pad_id)[:, :-1]
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.where(keep, targets, 0)[..., None], -1)[..., 0]
    return -(picked * keep).sum() / keep.sum()


def test_loss_ignores_ignore_token_id_and_pad():
    config = our_config(num_layers=1)
    model = build(config, train=True)
    ids = np.random.default_rng(2).integers(1, VOCAB, (2, SEQ + 1)).astype(np.int32)
    ids[1, -4:] = config.pad_token_id  # right padding
    labels = ids.copy()
    labels[0, 3:6] = config.ignore_token_id
    loss = float(model(Tensor(ids), Tensor(labels)).asnumpy())
    assert loss == pytest.approx(reference_loss(model, ids, labels, -100, 0), rel=1e-5)

    # What sits at an ignored or padded position cannot change the loss.
    other = labels.copy()
    other[1, -3:] = 7
    assert float(model(Tensor(ids), Tensor(other)).asnumpy()) == pytest.approx(loss, rel=1e-6)
    # Without labels the targets are the shifted inputs, here with the pad positions skipped.
    assert float(model(Tensor(ids)).asnumpy()) == pytest.approx(reference_loss(model, ids, ids, -100, 0), rel=1e-5)


def test_pad_equal_to_eos_keeps_every_target_of_packed_rows():
    """HF configs often set pad_token_id == eos_token_id. A packed pretraining row holds an eos after every document:
    those are real tokens, and the targets after them count; only the run of pad ids that ends a row is padding."""
    eos = 2
    config = our_config(num_layers=1, pad_token_id=eos)
    model = build(config, train=True)
    ids = np.random.default_rng(5).integers(3, VOCAB, (3, SEQ + 1)).astype(np.int32)
    ids[0, [3, 7, SEQ]] = eos          # three documents end inside / at the end of a packed row
    ids[1, [4, 8, 9]] = eos            # ... twice in a row (an empty document)
    ids[2, 6:] = eos                   # a padded row: its document's eos, then padding
    _, targets, mask = model.loss_targets(Tensor(ids))
    mask = mask.asnumpy()
    assert mask[0].all() and mask[1].all()         # every target of the packed rows counts
    assert mask[2].tolist() == [True] * 6 + [False] * (SEQ - 6)  # up to the eos ending the document, learned
    loss = float(model(Tensor(ids)).asnumpy())
    assert loss == pytest.approx(reference_loss(model, ids, ids, -100, eos), rel=1e-5)
    # with labels the same rows count the same targets
    assert float(model(Tensor(ids), Tensor(ids)).asnumpy()) == pytest.approx(loss, rel=1e-6)


# ---------------------------------------------------------------- layouts, recompute

def test_parameter_layouts_declare_every_weight():
    model = build(our_config(num_layers=2, n_kv_heads=2))
    layouts = model.parameter_layouts()
    assert set(layouts) == {p.name for p in model.get_parameters()}
    expected_by_suffix = {
        "attention.wq.weight": 0, "attention.wk.weight": 0, "attention.wv.weight": 0, "attention.wo.weight": 1,
        "feed_forward.w1.weight": 0, "feed_forward.w3.weight": 0, "feed_forward.w2.weight": 1,
        "attention_norm.weight": None, "ffn_norm.weight": None, "model.norm_out.weight": None,
        "lm_head.weight": 0, "model.tok_embeddings.embedding_weight": None,  # vocab_emb_dp defaults to True
    }
    for name, dim in layouts.items():
        matches = [suffix for suffix in expected_by_suffix if name.endswith(suffix)]
        assert len(matches) == 1, name
        assert dim == expected_by_suffix[matches[0]], (name, dim)
        if dim is not None:
            shape = dict((p.name, p.shape) for p in model.get_parameters())[name]
            assert shape[dim] % 2 == 0, (name, shape)  # splittable over a model_parallel of 2


def test_recompute_config_is_accepted_and_does_not_change_the_loss():
    ids = Tensor(np.random.default_rng(3).integers(1, VOCAB, (2, SEQ + 1)).astype(np.int32))
    plain = float(build(our_config(), train=True)(ids).asnumpy())
    for recompute in (True, [1], False):
        model = build(our_config(), train=True, recompute_config={"recompute": recompute})
        assert float(model(ids).asnumpy()) == pytest.approx(plain, rel=1e-6)


# ---------------------------------------------------------------- graph mode

def test_graph_mode_loss_equals_pynative():
    config = our_config(num_layers=1, n_kv_heads=2, sliding_window=None, pad_token_id=2)
    ids = np.random.default_rng(4).integers(3, VOCAB, (2, SEQ + 1)).astype(np.int32)
    ids[0, 4] = ids[1, 2] = 2  # an eos equal to the pad id inside a row: real
    ids[1, -3:] = 2            # trailing padding
    ids = Tensor(ids)
    pynative_loss = float(build(config, train=True)(ids).asnumpy())
    ms.set_context(mode=ms.GRAPH_MODE)
    graph_loss = float(build(config, train=True)(ids).asnumpy())
    assert graph_loss == pytest.approx(pynative_loss, rel=1e-5)


# ---------------------------------------------------------------- the head fused with the loss

@pytest.mark.parametrize("tie", [False, True])
def test_chunked_head_loss_has_the_composed_loss_and_gradients(tie, monkeypatch):
    """Training takes the loss through the head in chunks of rows (core/loss/head_loss.py: the gradients are made in
    the forward pass); its loss and every gradient equal those of the logits through CrossEntropyLoss."""
    from mindformers.core.loss import head_loss  # pylint: disable=import-outside-toplevel
    from mindformers.models.decoder.causal_lm import DecoderForCausalLM  # pylint: disable=C0415
    monkeypatch.setattr(head_loss, "CHUNK_ROWS", 5)  # 2 x 12 rows: chunks of 5 and a ragged tail
    model = build(our_config(num_layers=1, tie_word_embeddings=tie), train=True)
    ids = np.random.default_rng(6).integers(1, VOCAB, (2, SEQ + 1)).astype(np.int32)
    ids[1, -3:] = 0  # padding: weight 0
    gradients = ms.value_and_grad(model, None, model.trainable_params())
    assert model.head_fuses_with_loss()
    fused_loss, fused = gradients(Tensor(ids))
    monkeypatch.setattr(DecoderForCausalLM, "head_fuses_with_loss", lambda self: False)
    loss, composed = gradients(Tensor(ids))
    assert float(fused_loss.asnumpy()) == pytest.approx(float(loss.asnumpy()), rel=1e-6)
    for ours, theirs in zip(fused, composed):
        np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), rtol=1e-5, atol=1e-7)
    monkeypatch.undo()
    from mindformers.pet import freeze_base  # pylint: disable=import-outside-toplevel
    freeze_base(model)  # a frozen head: the composed path, whose backward skips the head's gradient
    assert not model.head_fuses_with_loss()
    freeze_base(model, [".*"])
    assert model.head_fuses_with_loss()
    if not tie:  # LoRA on the head adds a path of its own: the composed head and loss take it
        from mindformers.pet.lora import add_lora  # pylint: disable=import-outside-toplevel
        add_lora(model.lm_head, 2, 4, 0.0)
        assert not model.head_fuses_with_loss()
