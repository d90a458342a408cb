"""The shared decoder's choices that no transformers family in the parity tests combines: fused q/k/v and gate/up
weights (qkv_concat), partial rotary, final logit soft-capping, and all of them at once in graph mode; ALiBi's slopes
(any head count, split over model-parallel ranks), GLM's interleaved rotary pairs, and the choices of Bloom, GPT-3
and Baichuan2 together (ALiBi over grouped heads, LayerNorm, embedding norm, plain MLP, NormHead; learned positions)
in graph mode; the model answering for itself (cache_spec, LoRA targets); one-line errors for configs it cannot
build or write."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn, ops

from mindformers import ConfigError
from mindformers.models import GemmaConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config
from mindformers.models.llama.convert_mapping import LLAMA
from mindformers.models.modules.positions import AlibiPosition, alibi_slopes
from mindformers.models.modules.rotary import RotaryEmbedding, rotary_tables
from mindformers.parallel.groups import ParallelGroups
from mindformers.parallel.parallelize import parallelize
from mindformers.models.qwen2 import QWEN2
from mindformers.parallel.parallel_check import ParallelSettings, check_model_split
from mindformers.pet import apply_pet

VOCAB, SEQ = 64, 10
EVERYTHING = dict(n_kv_heads=2, head_dim=12, qkv_concat=True,
                  qkv_has_bias=True, attn_proj_has_bias=True, partial_rotary_factor=0.5, hidden_act="gelu_tanh",
                  add_rmsnorm_offset=True, scale_embedding=True, final_logit_softcapping=5.0,
                  tie_word_embeddings=True, sliding_window=6)
# Bloom's and Baichuan2-13B's choices over grouped heads (no family has ALiBi with GQA: the bias must follow each
# query head to its group), with fused q/k/v; GPT-3's.
ALIBI_ET_AL = dict(n_kv_heads=2, qkv_concat=True, qkv_has_bias=True, position_embedding_type="alibi",
                   normalization="LayerNorm", embedding_norm=True, gated_mlp=False, mlp_has_bias=True,
                   hidden_act="gelu_tanh", norm_head=True, sliding_window=6)
LEARNED_POSITIONS = dict(position_embedding_type="learned_absolute", normalization="LayerNorm", gated_mlp=False,
                         mlp_has_bias=True, hidden_act="gelu", tie_word_embeddings=True, qkv_has_bias=True,
                         attn_proj_has_bias=True)


def config(**values):
    base = dict(seq_length=SEQ, num_layers=2, vocab_size=VOCAB, hidden_size=32, num_heads=4, intermediate_size=40,
                compute_dtype="float32", initializer_range=0.2)
    return LlamaConfig(**dict(base, **values))


def build(**values):
    np.random.seed(0)
    model = LlamaForCausalLM(config(**values))
    for param in model.get_parameters():  # norms and biases random too, so a misplaced one shows
        if param.name.endswith((".bias", "norm.weight", "norm_out.weight")):
            param.set_data(Tensor(np.random.uniform(-0.5, 0.5, param.shape).astype(np.float32)))
    return model.set_train(False)


def ids(rows=2):
    return np.random.default_rng(1).integers(1, VOCAB, (rows, SEQ)).astype(np.int32)


def test_fused_qkv_and_gate_up_compute_what_separate_weights_do():
    fused, separate = build(qkv_concat=True, qkv_has_bias=True), build(qkv_concat=False, qkv_has_bias=True)
    weights = {p.name: p.asnumpy() for p in separate.get_parameters()}
    names = {p.name for p in fused.get_parameters()}
    assert "model.layers.0.attention.w_qkv.weight" in names and "model.layers.0.feed_forward.w_gate_hidden.weight" \
        in names and not any(".wq." in name or ".w1." in name for name in names)
    for param in fused.get_parameters():
        prefix = param.name.rsplit(".", 2)[0]
        kind = param.name.rsplit(".", 1)[1]
        if ".w_qkv." in param.name:
            parts = [weights[f"{prefix}.{name}.{kind}"] for name in ("wq", "wk", "wv")]
        elif ".w_gate_hidden." in param.name:
            parts = [weights[f"{prefix}.{name}.{kind}"] for name in ("w1", "w3")]
        else:
            parts = [weights[param.name]]
        param.set_data(Tensor(np.concatenate([p.reshape(-1, *p.shape[1:]) for p in parts])))
    np.testing.assert_allclose(fused(Tensor(ids())).asnumpy(), separate(Tensor(ids())).asnumpy(), atol=1e-5)
    # the fused model's LoRA default is the fused projection; the HF mapping splits it back into q/k/v
    lora = apply_pet(build(qkv_concat=True), {"pet_type": "lora", "lora_rank": 2})
    assert {p.name for p in lora.trainable_params()} == {f"model.layers.{i}.attention.w_qkv.lora_{ab}"
                                                         for i in range(2) for ab in "ab"}
    plan = {p.ours: [part.hf_name for part in p.parts] for p in LLAMA.plan(fused.config)}
    assert plan["model.layers.1.attention.w_qkv.bias"] == [f"model.layers.1.self_attn.{x}_proj.bias" for x in "qkv"]


def test_partial_rotary_rotates_the_leading_features_only():
    """HF's partial rotary: the first rotary_dim features of each head rotate (by a rotary_dim-wide embedding's
    frequencies), the rest pass through; in the full-sequence tables and the decode step's rotation matrices."""
    head_dim, rotary_dim, positions = 8, 4, 6
    x = np.random.default_rng(2).normal(size=(1, 2, positions, head_dim)).astype(np.float32)
    cos, sin = rotary_tables(rotary_dim, positions, 10000.0)
    rot = x[..., :rotary_dim]
    half = rotary_dim // 2
    rotated = rot * cos + np.concatenate([-rot[..., half:], rot[..., :half]], -1) * sin
    expected = np.concatenate([rotated, x[..., rotary_dim:]], -1)
    rotary = RotaryEmbedding(head_dim, positions, rotary_dim=rotary_dim)
    np.testing.assert_allclose(rotary.rotate(Tensor(x), rotary.first(positions)).asnumpy(), expected, atol=1e-6)
    one_token = Tensor(x[:, :, 3:4])
    step = rotary.rotate(one_token, rotary.at(Tensor(np.array([[3]], np.int32))))
    np.testing.assert_allclose(step.asnumpy(), expected[:, :, 3:4], atol=1e-6)


class PartnerScore(nn.Cell):
    """sum(x[..., partners] * weights), reading the partners as the rotary embedding does or by a gather of them."""

    def __init__(self, rotary, weights, by_gather):
        super().__init__()
        self.rotary, self.weights, self.by_gather = rotary, weights, by_gather

    def construct(self, x):
        partners = ops.gather(x, self.rotary.partners, 3) if self.by_gather else self.rotary.partner_features(x)
        return (partners * self.weights).sum()


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
@pytest.mark.parametrize("rotary_dim, interleaved", [(8, False), (4, False), (4, True)],
                         ids=["half_split", "half_split_partial", "interleaved_partial"])
def test_rotary_partners_and_their_gradient_equal_a_gather_of_them(mode, rotary_dim, interleaved):
    """The half-split layout swaps its halves by slices and a concat, not a gather (a cheaper backward): the values
    and the gradient are the gather's, exactly."""
    rng = np.random.default_rng(4)
    x, weights = (Tensor(rng.normal(size=(2, 3, 5, 8)).astype(np.float32)) for _ in range(2))
    rotary = RotaryEmbedding(8, 5, rotary_dim=rotary_dim, interleaved=interleaved)
    ms.set_context(mode=mode)
    try:
        results = [ms.value_and_grad(PartnerScore(rotary, weights, by_gather))(x) for by_gather in (False, True)]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    (value, grad), (gathered_value, gathered_grad) = ((v.asnumpy(), g.asnumpy()) for v, g in results)
    assert value == gathered_value
    np.testing.assert_array_equal(grad, gathered_grad)
    assert np.abs(grad).min() > 0  # every feature is some feature's partner


def test_final_logit_softcapping_squashes_the_logits():
    plain, capped = build(), build(final_logit_softcapping=2.0)
    raw = plain(Tensor(ids())).asnumpy()
    np.testing.assert_allclose(capped(Tensor(ids())).asnumpy(), 2.0 * np.tanh(raw / 2.0), atol=1e-5)


def test_alibi_slopes_follow_the_paper_for_any_head_count_and_split_over_ranks():
    """Press et al.: 2^(-8i/n) for n a power of two; otherwise the closest power of two's slopes, then the odd ones
    of twice as many heads (Bloom's and Baichuan2's rule). Each model-parallel rank takes its block of heads."""
    np.testing.assert_allclose(alibi_slopes(8), [2.0 ** -i for i in range(1, 9)])
    np.testing.assert_allclose(alibi_slopes(6), [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3])
    assert len(alibi_slopes(40)) == 40 and alibi_slopes(40)[32] == pytest.approx(2.0 ** -0.125)  # 13B's 33rd head
    for rank in range(2):
        local = parallelize(AlibiPosition(6), ParallelGroups(model_parallel=2, model_rank=rank))
        local = local.negative_slopes.asnumpy().reshape(-1)
        np.testing.assert_allclose(-local, alibi_slopes(6)[3 * rank:3 * rank + 3], rtol=1e-7)


def test_interleaved_rotary_rotates_neighbouring_pairs():
    """GLM's layout: features (2i, 2i+1) rotate together by theta_i of a rotary_dim-wide embedding; with partial
    rotary the rest pass through. In the full-sequence tables and the decode step's rotation matrices."""
    head_dim, rotary_dim, positions = 8, 4, 6
    x = np.random.default_rng(3).normal(size=(1, 2, positions, head_dim)).astype(np.float32)
    theta = 1.0 / 10000.0 ** (np.arange(0, rotary_dim, 2) / rotary_dim)
    angle = np.arange(positions)[:, None] * theta[None, :]
    even, odd = x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2]
    pairs = np.stack([even * np.cos(angle) - odd * np.sin(angle), odd * np.cos(angle) + even * np.sin(angle)], -1)
    expected = np.concatenate([pairs.reshape(1, 2, positions, rotary_dim), x[..., rotary_dim:]], -1)
    rotary = RotaryEmbedding(head_dim, positions, rotary_dim=rotary_dim, interleaved=True)
    np.testing.assert_allclose(rotary.rotate(Tensor(x), rotary.first(positions)).asnumpy(), expected, atol=1e-6)
    step = rotary.rotate(Tensor(x[:, :, 4:5]), rotary.at(Tensor(np.array([[4]], np.int32))))
    np.testing.assert_allclose(step.asnumpy(), expected[:, :, 4:5], atol=1e-6)


@pytest.mark.parametrize("choices", [EVERYTHING, ALIBI_ET_AL, LEARNED_POSITIONS],
                         ids=["rotary_choices", "alibi_layernorm_normhead", "learned_positions"])
def test_every_choice_at_once_graph_equals_pynative_and_the_cache_changes_nothing(choices):
    model = build(**choices)
    spec = model.cache_spec()
    if choices is EVERYTHING:
        assert (spec.num_layers, spec.kv_heads, spec.head_dim, spec.sliding_window) == (2, 2, 12, 6)
    rows = ids()
    pynative_logits = model(Tensor(rows)).asnumpy()
    train_ids = Tensor(np.concatenate([rows, rows[:, :1]], 1))
    pynative_loss = float(model.set_train(True)(train_ids).asnumpy())
    cached = model.set_train(False).generate([[3, 4, 5, 6, 7, 8, 9], [10, 11]], max_new_tokens=3, use_past=True)
    ms.set_context(mode=ms.GRAPH_MODE)
    np.testing.assert_allclose(model(Tensor(rows)).asnumpy(), pynative_logits, atol=1e-5)
    assert float(model.set_train(True)(train_ids).asnumpy()) == pytest.approx(pynative_loss, rel=1e-5)
    model.set_train(False)
    assert model.generate([[3, 4, 5, 6, 7, 8, 9], [10, 11]], max_new_tokens=3, use_past=False) == cached


@pytest.mark.parametrize("values, key, fragment", [
    (dict(hidden_act="relu"), "hidden_act", "one of silu"),
    (dict(head_dim=6, partial_rotary_factor=0.5), "partial_rotary_factor", "even number of rotary features"),
    (dict(partial_rotary_factor=1.5), "partial_rotary_factor", "(0, 1]"),
    (dict(pad_token_id=VOCAB), "pad_token_id", f"below vocab_size ({VOCAB})"),
    (dict(final_logit_softcapping=-1.0), "final_logit_softcapping", "positive number"),
    (dict(qkv_concat="yes"), "qkv_concat", "True or False"),
    (dict(hidden_size=30), "num_heads", "or head_dim set"),
    (dict(position_embedding_type="sinusoidal"), "position_embedding_type", "rope, alibi, learned_absolute"),
    (dict(normalization="BatchNorm"), "normalization", "RMSNorm or LayerNorm"),
    (dict(layer_norm_epsilon=0), "layer_norm_epsilon", "positive number"),
    (dict(norm_head=True, tie_word_embeddings=True), "norm_head", "False with tie_word_embeddings"),
    (dict(gated_mlp="no"), "gated_mlp", "True or False"),
    (dict(use_flash_attention="yes"), "use_flash_attention", "True, False or null"),
])
def test_bad_choices_are_one_line_errors(values, key, fragment):
    with pytest.raises(ConfigError, match=f"model.model_config.{key}") as error:
        config(**values)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_what_cannot_be_split_or_written_is_refused():
    with pytest.raises(ConfigError, match="qkv_concat: fused q/k/v and gate/up weights cannot be split"):
        check_model_split(ParallelSettings(model_parallel=2), config(qkv_concat=True))
    with pytest.raises(ConfigError, match="add_rmsnorm_offset: HF LlamaForCausalLM cannot express True"):
        LLAMA.config_to_hf(config(add_rmsnorm_offset=True), "F32")
    with pytest.raises(ConfigError, match="qkv_has_bias == attn_proj_has_bias"):
        LLAMA.config_to_hf(config(qkv_has_bias=True), "F32")
    with pytest.raises(ConfigError, match="qkv_has_bias: HF Qwen2ForCausalLM cannot express False"):
        QWEN2.config_to_hf(Qwen2Config(num_layers=1, hidden_size=32, num_heads=4, vocab_size=VOCAB, pad_token_id=0,
                                       qkv_has_bias=False), "F32")
    qwen = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=4, vocab_size=VOCAB, intermediate_size=8,
                use_sliding_window=True, sliding_window=4, max_window_layers=2, pad_token_id=0)
    with pytest.raises(ConfigError, match="sliding-window attention on some layers only"):
        QWEN2.config_from_hf(qwen, "F32")
    assert QWEN2.config_from_hf(dict(qwen, max_window_layers=0), "F32")["sliding_window"] == 4


def test_family_classes_are_their_flagships_and_check_yaml_keys():
    gemma = GemmaConfig()
    assert (gemma.hidden_size, gemma.size_per_head, gemma.q_size, gemma.activation) == (3072, 256, 4096, "gelu_tanh")
    assert Qwen2Config(vocab_size=VOCAB, pad_token_id=0).qkv_has_bias
    from mindformers.tools.register.registry import check_arguments  # pylint: disable=import-outside-toplevel
    with pytest.raises(ConfigError, match="unknown key for GemmaConfig; did you mean 'head_dim'"):
        check_arguments(GemmaConfig, {"head_dims": 128}, "model.model_config")


GLM = dict(hidden_size=32, num_layers=1, num_attention_heads=4, multi_query_attention=True, multi_query_group_num=2,
           ffn_hidden_size=40, padded_vocab_size=VOCAB, kv_channels=8)


@pytest.mark.parametrize("family, hf, fragment", [
    ("bloom", dict(hidden_size=32, n_layer=1, n_head=4, vocab_size=VOCAB,
                   apply_residual_connection_post_layernorm=True), "apply_residual_connection_post_layernorm: true"),
    ("bloom", dict(n_layer=1, n_head=4, vocab_size=VOCAB), "expected the key hidden_size"),
    ("gpt3", dict(n_embd=32, n_layer=1, n_head=4, vocab_size=VOCAB, scale_attn_by_inverse_layer_idx=True),
     "scale_attn_by_inverse_layer_idx: true"),
    ("gpt3", dict(n_embd=32, n_layer=1, n_head=4, vocab_size=VOCAB, activation_function="relu"),
     "activation_function 'relu'"),
    ("chatglm3", dict(GLM, rmsnorm=False), "rmsnorm: false is not supported"),
    ("chatglm3", dict(GLM, add_bias_linear=True), "add_bias_linear: true is not supported"),
])
def test_release_configs_they_cannot_read_are_one_line_errors(family, hf, fragment, tmp_path):
    """Through convert_weight.py: exit 2, one line naming config.json and the key, nothing written."""
    import json  # pylint: disable=import-outside-toplevel
    import convert_weight  # pylint: disable=import-outside-toplevel
    model_type = {"bloom": "bloom", "gpt3": "gpt2", "chatglm3": "chatglm"}[family]
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps(dict(hf, model_type=model_type)))
    with pytest.raises(SystemExit) as code:
        convert_weight.main(["--no_progress", "--model", family, "--input_path", str(tmp_path / "hf"),
                             "--output_path", str(tmp_path / "out.ckpt")])
    assert code.value.code == 2
    assert not (tmp_path / "out.ckpt").exists()
    with pytest.raises(ConfigError, match="config.json") as error:
        from mindformers.checkpoint.hf_mapping import get_family  # pylint: disable=import-outside-toplevel
        get_family(family).config_from_hf(dict(hf, model_type=model_type), "F32", str(tmp_path / "config.json"))
    assert fragment in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("family, values, fragment", [
    ("bloom", dict(position_embedding_type="rope"), "position_embedding_type: HF BloomForCausalLM cannot express"),
    ("bloom", dict(intermediate_size=100), "intermediate_size: HF BloomForCausalLM cannot express 100"),
    ("bloom", dict(n_kv_heads=2), "one key/value head per query head"),
    ("gpt3", dict(embedding_norm=True), "embedding_norm: HF GPT2LMHeadModel cannot express True"),
    ("gpt3", dict(hidden_act="silu"), "hidden_act: HF GPT2LMHeadModel cannot express 'silu'"),
    ("baichuan2", dict(norm_head=False), "norm_head: HF BaichuanForCausalLM cannot express False"),
    ("baichuan2", dict(n_kv_heads=2), "one key/value head per query head and rotary theta 10000"),
    ("chatglm3", dict(rotary_interleaved=False), "rotary_interleaved: HF ChatGLMModel cannot express False"),
    ("chatglm3", dict(attn_proj_has_bias=True), "attn_proj_has_bias: HF ChatGLMModel cannot express True"),
])
def test_models_the_release_layouts_cannot_express_are_refused(family, values, fragment):
    from mindformers.checkpoint.hf_mapping import get_family  # pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerModuleType, MindFormerRegister  # noqa: E501 pylint: disable=import-outside-toplevel
    mapping = get_family(family)
    config_class = MindFormerRegister.get_cls(MindFormerModuleType.CONFIG, mapping.our_config_type)
    sizes = dict(num_layers=1, hidden_size=32, num_heads=4, vocab_size=VOCAB, pad_token_id=0, bos_token_id=1,
                 eos_token_id=2, intermediate_size=128 if family in ("bloom", "gpt3") else 40)
    with pytest.raises(ConfigError) as error:
        mapping.config_to_hf(config_class(**dict(sizes, **values)), "F32")
    assert fragment in str(error.value) and "\n" not in str(error.value)
