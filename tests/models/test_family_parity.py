"""Every family on the shared decoder against transformers, through the real converter (fp32, pynative):
HF folder -> convert_weight.py -> from_pretrained: logits equal transformers' to 1e-4 (with and without left
padding), greedy generate gives transformers' ids with and without the KV cache, and convert_weight.py --reversed
gives back every HF tensor bit for bit in a folder transformers loads. (Llama and Mistral: test_hf_parity.py,
tests/convert and tests/generation.) Mixtral's routers choose transformers' experts, and its training loss with the
load-balancing loss is transformers' output_router_logits=True loss. Baichuan2 and ChatGLM3, whose reference code
is not in transformers, against the references of tests/fixtures/release_models.py, from folders in their releases'
layout."""
import functools
import json

import numpy as np
import pytest

pytest.importorskip("transformers")
import mindspore as ms  # noqa: E402
import torch  # noqa: E402

import convert_weight  # noqa: E402
from mindformers import models  # noqa: E402
from tests.fixtures import release_models  # noqa: E402
from tests.fixtures.family_models import FAMILY_MODELS, build_family_model, save_family_model  # noqa: E402
from tests.fixtures.hf_models import hf_state, load_hf  # noqa: E402
from tests.models.test_hf_parity import assert_logits_match, inputs  # noqa: E402

PROMPTS = [[5, 6, 7, 8, 9, 1], [10, 11, 12]]
NEW = 6
EOS = 2

# case -> (convert_weight --model, our causal LM class, what the converted config must say)
CASES = {
    "qwen2": ("qwen2", "Qwen2ForCausalLM", dict(qkv_has_bias=True, attn_proj_has_bias=False, theta=1e6)),
    "qwen2_tied": ("qwen1.5", "Qwen2ForCausalLM", dict(tie_word_embeddings=True)),
    "gemma": ("gemma", "GemmaForCausalLM", dict(head_dim=16, kv_heads=1, add_rmsnorm_offset=True,
                                                scale_embedding=True, activation="gelu_tanh")),
    "internlm": ("internlm", "InternLMForCausalLM", dict(qkv_has_bias=True, attn_proj_has_bias=True)),
    "yi": ("yi", "YiForCausalLM", dict(theta=5e6, kv_heads=2)),
    "codellama": ("codellama", "CodeLlamaForCausalLM", dict(theta=1e6)),
    "aquila2": ("aquila2", "Aquila2ForCausalLM", dict(kv_heads=2)),
    "mixtral": ("mixtral", "MixtralForCausalLM", dict(kv_heads=2, theta=1e6, sliding_window=None)),
    "bloom": ("bloom", "BloomForCausalLM", dict(position_kind="alibi", uses_layer_norm=True, embedding_norm=True,
                                                gated_mlp=False, mlp_has_bias=True, num_heads=6,
                                                tie_word_embeddings=True, activation="gelu_tanh")),
    "gpt3": ("gpt3", "GPT3ForCausalLM", dict(position_kind="learned_absolute", uses_layer_norm=True, gated_mlp=False,
                                             activation="gelu", max_position_embedding=32, intermediate_size=128)),
}
assert set(CASES) == set(FAMILY_MODELS)
AUTO_FROM_HF = {"qwen2": "Qwen2ForCausalLM", "gemma": "GemmaForCausalLM", "internlm": "InternLMForCausalLM",
                "aquila": "Aquila2ForCausalLM", "llama": "LlamaForCausalLM", "mixtral": "MixtralForCausalLM",
                "bloom": "BloomForCausalLM", "gpt2": "GPT3ForCausalLM"}


def hf_greedy(hf_model, prompt):
    with torch.no_grad():
        out = hf_model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                max_new_tokens=NEW, do_sample=False, pad_token_id=0, eos_token_id=EOS)
    ids = out[0].tolist()
    return ids[:ids.index(EOS, len(prompt)) + 1] if EOS in ids[len(prompt):] else ids


@pytest.mark.parametrize("case", sorted(CASES))
def test_family_matches_transformers_through_the_converter(case, tmp_path):
    model_name, class_name, expected = CASES[case]
    hf_folder, hf_model = save_family_model(case, tmp_path / "hf")
    assert convert_weight.main(["--no_progress", "--model", model_name, "--input_path", hf_folder,
                                "--output_path", str(tmp_path / "ours" / "tiny.ckpt")]) == 0
    ours = getattr(models, class_name).from_pretrained(tmp_path / "ours")
    for key, value in expected.items():
        assert getattr(ours.config, key) == value, key
    # AutoModelForCausalLM finds the family from the YAML beside our checkpoint, or from config.json's model_type
    assert type(models.AutoModelForCausalLM.from_pretrained(tmp_path / "ours")).__name__ == class_name
    hf_type = json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"]
    assert type(models.AutoModelForCausalLM.from_pretrained(hf_folder)).__name__ == AUTO_FROM_HF[hf_type]

    assert_logits_match(ours, hf_model)

    cached = ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=EOS, use_past=True)
    assert ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=EOS, use_past=False) == cached
    assert cached == [hf_greedy(hf_model, prompt) for prompt in PROMPTS]

    back = tmp_path / "back"
    assert convert_weight.main(["--no_progress", "--model", model_name, "--input_path",
                                str(tmp_path / "ours" / "tiny.ckpt"), "--output_path", str(back), "--reversed"]) == 0
    original, returned = hf_state(hf_folder), hf_state(back)
    assert sorted(original) == sorted(returned)
    for name, tensor in original.items():
        assert returned[name].dtype == tensor.dtype and torch.equal(returned[name], tensor), name
    written = json.loads((back / "config.json").read_text())
    assert written["architectures"] == [type(hf_model).__name__]
    reloaded = load_hf(str(back))  # transformers reads the config we wrote, and computes what the original does
    ids = torch.tensor(np.array(PROMPTS[0])[None])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, hf_model(ids).logits)


def test_mixtral_training_loss_and_routing_match_transformers(tmp_path):
    hf_folder, hf_model = save_family_model("mixtral", tmp_path / "hf")
    ours = models.MixtralForCausalLM.from_pretrained(hf_folder)
    assert (ours.config.moe.expert_num, ours.config.moe.top_k, ours.config.moe.aux_loss_factor) == (4, 2, 0.02)
    rows = np.random.default_rng(0).integers(3, ours.config.vocab_size, (2, 17))
    ours.set_train(True)
    loss, metrics = ours(ms.Tensor(rows, ms.int32))
    recorded = ours.step_metrics(metrics.asnumpy())
    with torch.no_grad():  # HF predicts shift_labels from input_ids: the rows' next tokens, as our training does
        out = hf_model(torch.tensor(rows[:, :-1]), labels=torch.tensor(rows[:, :-1]),
                       shift_labels=torch.tensor(rows[:, 1:]), output_router_logits=True)
    assert abs(float(loss.asnumpy()) - float(out.loss)) < 1e-5
    assert abs(recorded["aux_loss"] - float(out.aux_loss)) < 1e-5 and float(out.aux_loss) > 1.0
    chosen = [torch.topk(logits, 2).indices.reshape(-1).numpy() for logits in out.router_logits]
    assert recorded["expert_load"] == [np.bincount(c, minlength=4).tolist() for c in chosen]
    assert recorded["dropped_tokens"] == 0


# Families whose reference code is not in transformers (tests/fixtures/release_models.py): case -> (convert_weight
# --model, our class, what the converted config must say, release config.json, weights, reference logits).
def baichuan_7b_reference(weights):
    llama = release_models.baichuan_as_llama(weights)
    return lambda ids, mask=None: llama(torch.tensor(ids), attention_mask=None if mask is None
                                        else torch.tensor(mask)).logits.detach().numpy()


RELEASES = {
    "baichuan2_7b": ("baichuan2", "Baichuan2ForCausalLM", dict(position_kind="rope", norm_head=True),
                     lambda: release_models.baichuan_config(alibi=False), release_models.baichuan_weights,
                     baichuan_7b_reference),
    "baichuan2_13b": ("baichuan2", "Baichuan2ForCausalLM", dict(position_kind="alibi", norm_head=True, num_heads=6),
                      lambda: release_models.baichuan_config(alibi=True), release_models.baichuan_weights,
                      lambda weights: functools.partial(release_models.baichuan_alibi_logits, weights)),
    "chatglm3": ("chatglm3", "ChatGLM3ForCausalLM", dict(kv_heads=2, rotary_dim=4, rotary_interleaved=True,
                                                          qkv_has_bias=True, attn_proj_has_bias=False),
                 release_models.chatglm_config, release_models.chatglm_weights,
                 lambda weights: functools.partial(release_models.chatglm_logits, weights)),
}


@pytest.mark.parametrize("case", sorted(RELEASES))
def test_release_layout_family_matches_its_reference(case, tmp_path):
    """HF folder in the release's layout -> convert_weight.py -> from_pretrained: logits equal the reference to 1e-4
    (with and without left padding), greedy ids with and without the KV cache equal the reference's, and
    convert_weight.py --reversed gives back every tensor of the release bit for bit (the fused W_pack and
    query_key_value rebuilt from our separate q/k/v, ChatGLM3's inv_freq buffer recomputed) and its config keys."""
    model_name, class_name, expected, release_config, make_weights, reference = RELEASES[case]
    weights = make_weights()
    hf_folder = release_models.save_release(tmp_path / "hf", release_config(), weights)
    assert convert_weight.main(["--no_progress", "--model", model_name, "--input_path", hf_folder,
                                "--output_path", str(tmp_path / "ours" / "tiny.ckpt")]) == 0
    ours = getattr(models, class_name).from_pretrained(tmp_path / "ours")
    for key, value in expected.items():
        assert getattr(ours.config, key) == value, key
    assert type(models.AutoModelForCausalLM.from_pretrained(hf_folder)).__name__ == class_name
    logits_of = reference(weights)

    ids, mask = inputs()
    for attention_mask in (None, mask):
        got = ours(ms.Tensor(ids, ms.int32), attention_mask=None if attention_mask is None
                   else ms.Tensor(attention_mask, ms.int32)).asnumpy()
        real = np.ones(ids.shape, bool) if attention_mask is None else attention_mask.astype(bool)
        np.testing.assert_allclose(got[real], logits_of(ids, attention_mask)[real], atol=1e-4, rtol=0)

    cached = ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=EOS, use_past=True)
    assert ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=EOS, use_past=False) == cached
    assert cached == [release_models.greedy(logits_of, prompt, NEW, EOS) for prompt in PROMPTS]

    back = tmp_path / "back"
    assert convert_weight.main(["--no_progress", "--model", model_name, "--input_path",
                                str(tmp_path / "ours" / "tiny.ckpt"), "--output_path", str(back), "--reversed"]) == 0
    returned = hf_state(back)
    assert sorted(returned) == sorted(weights)
    for name, value in weights.items():
        assert returned[name].dtype == torch.float32 and np.array_equal(returned[name].numpy(), value), name
    written, published = json.loads((back / "config.json").read_text()), release_config()
    assert {key: written.get(key) for key in published if key not in ("_name_or_path", "transformers_version")} == \
        {key: value for key, value in published.items() if key not in ("_name_or_path", "transformers_version")}


@pytest.mark.parametrize("case", ["bloom", "gpt3"])
def test_save_pretrained_names_read_as_the_published_ones(case, tmp_path):
    """transformers' save_pretrained writes `transformer.`-prefixed names; they read as the published ones do."""
    model = build_family_model(case)
    model.save_pretrained(tmp_path)
    ours = getattr(models, CASES[case][1]).from_pretrained(tmp_path)
    assert_logits_match(ours, model)
