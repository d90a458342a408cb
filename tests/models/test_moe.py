"""The mixture-of-experts feed-forward against a plain numpy reference written token by token (routing, top-k
renormalisation and scaling, capacity with both drop policies, the experts' SwiGLU, the weighted combine and the
router statistics), graph mode against PyNative, the load-balancing loss against its definition, dense leading
layers, and MindFormers' moe_config keys: honoured, accepted, or refused in one line. (Parity with transformers'
Mixtral: tests/models/test_family_parity.py; expert parallelism: tests/parallel/test_msrun_expert_parallel.py.)"""
import math

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from mindformers import ConfigError
from mindformers.checkpoint.hf_mapping import get_family
from mindformers.models import BloomConfig, LlamaConfig, LlamaForCausalLM
from mindformers.models.decoder.moe_config import read_moe_config
from mindformers.models.modules.moe import MoEFeedForward, RouterBalance
from mindformers.parallel.groups import expert_group_ranks
from mindformers.parallel.parallel_check import ParallelSettings, check_device, check_expert_split
from tests.e2e.helpers import REPO, run_main, write_user_config

HIDDEN, FFN, EXPERTS, TOP_K = 8, 12, 4, 2


def settings(**keys):
    return read_moe_config(dict({"expert_num": EXPERTS, "num_experts_chosen": TOP_K}, **keys))


def layer(**keys):
    np.random.seed(3)
    cell = MoEFeedForward(HIDDEN, FFN, settings(**keys), init_std=0.5)
    cell.router.dense.weight.set_data(Tensor(np.random.normal(0, 1.0, (EXPERTS, HIDDEN)).astype(np.float32)))
    return cell


def silu(x):
    return x / (1 + np.exp(-x))


def reference(cell, x, capacity_factor, drop_by_position, normalise=True, scale=1.0, training=True):
    """Token by token: each choice queues at its expert in the drop policy's order; over capacity it is dropped."""
    router = cell.router.dense.weight.asnumpy()
    w1, w3, w2 = (getattr(cell.ffn, name).weight.asnumpy() for name in ("w1", "w3", "w2"))
    tokens = x.reshape(-1, HIDDEN)
    count = len(tokens)
    scores = tokens @ router.T
    probabilities = np.exp(scores - scores.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    chosen = np.argsort(-probabilities, -1, kind="stable")[:, :TOP_K]
    weights = np.take_along_axis(probabilities, chosen, -1)
    if normalise:
        weights = weights / weights.sum(-1, keepdims=True)
    weights = weights * scale
    capacity = count if capacity_factor <= 0 or not training else min(
        count, max(1, math.ceil(TOP_K * count * capacity_factor / EXPERTS)))
    order = [(t, k) for t in range(count) for k in range(TOP_K)] if drop_by_position else \
        [(t, k) for k in range(TOP_K) for t in range(count)]
    queued, kept = [0] * EXPERTS, set()
    for t, k in order:
        if queued[chosen[t, k]] < capacity:
            kept.add((t, k))
        queued[chosen[t, k]] += 1
    out = np.zeros_like(tokens)
    for t, k in kept:
        e = chosen[t, k]
        hidden = silu(w1[e] @ tokens[t]) * (w3[e] @ tokens[t])
        out[t] += weights[t, k] * (w2[e] @ hidden)
    statistics = np.concatenate([np.bincount(chosen.reshape(-1), minlength=EXPERTS), probabilities.sum(0),
                                 [count * TOP_K - len(kept)]])
    return out.reshape(x.shape), statistics


@pytest.mark.parametrize("keys", [
    dict(capacity_factor=-1.0),
    dict(capacity_factor=1.0),  # about a third of the choices dropped, second choices first
    dict(capacity_factor=1.0, enable_sdrop=True),  # later tokens first
    dict(capacity_factor=0.5, norm_topk_prob=False, routed_scaling_factor=2.5),
])
def test_moe_layer_computes_the_token_by_token_reference(keys):
    cell = layer(**keys)
    x = np.random.default_rng(1).standard_normal((2, 9, HIDDEN)).astype(np.float32)
    options = dict(capacity_factor=keys["capacity_factor"], drop_by_position=keys.get("enable_sdrop", False),
                   normalise=keys.get("norm_topk_prob", True), scale=keys.get("routed_scaling_factor", 1.0))
    cell.set_train(True)
    out, statistics = cell(Tensor(x))
    expected, expected_statistics = reference(cell, x, **options)
    np.testing.assert_allclose(out.asnumpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(statistics.asnumpy(), expected_statistics, rtol=1e-5, atol=1e-5)
    if keys["capacity_factor"] > 0:
        assert expected_statistics[-1] > 0  # the case drops something
    cell.set_train(False)  # inference routes every token whatever the capacity
    np.testing.assert_allclose(cell(Tensor(x)).asnumpy(), reference(cell, x, **options, training=False)[0],
                               rtol=1e-5, atol=1e-5)


def test_drop_policies_differ_where_they_should():
    """Capacity 1 per expert for 4 tokens x 2 choices: choice-major order keeps every first choice it can, token
    order keeps the earliest tokens' choices."""
    x = np.random.default_rng(5).standard_normal((1, 4, HIDDEN)).astype(np.float32)
    by_choice = reference(layer(), x, capacity_factor=0.5, drop_by_position=False)[0]
    by_position = reference(layer(), x, capacity_factor=0.5, drop_by_position=True)[0]
    assert not np.allclose(by_choice, by_position)


def test_graph_mode_computes_what_pynative_does():
    x = Tensor(np.random.default_rng(2).standard_normal((2, 6, HIDDEN)).astype(np.float32))
    results = []
    for mode in (ms.PYNATIVE_MODE, ms.GRAPH_MODE):
        ms.set_context(mode=mode)
        cell = layer(capacity_factor=1.0)
        cell.set_train(True)
        results.append([value.asnumpy() for value in cell(x)])
    for pynative_value, graph_value in zip(*results):
        np.testing.assert_allclose(graph_value, pynative_value, rtol=1e-6, atol=1e-6)


def test_load_balancing_loss_is_switch_transformers_over_all_layers():
    """loss = E * sum_e f_e P_e with f_e the share of choices (top_k per token) and P_e the mean probability, both
    over every token of every layer; a perfectly even router scores top_k."""
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 20, (3, EXPERTS)).astype(np.float32)
    counts[:, -1] += 60 * TOP_K - counts.sum(1)  # 60 tokens per layer, 2 choices each
    probabilities = rng.random((3, EXPERTS)).astype(np.float32) * 30
    statistics = np.concatenate([counts, probabilities, np.full((3, 1), 7, np.float32)], 1)
    loss, metrics = RouterBalance(EXPERTS, TOP_K)(Tensor(statistics))
    rows = 3 * 60
    expected = EXPERTS * np.sum(counts.sum(0) / rows * probabilities.sum(0) / rows)
    assert float(loss.asnumpy()) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(metrics.asnumpy(), np.concatenate([[expected, 21], counts.reshape(-1)]), rtol=1e-6)
    even = np.concatenate([np.full((1, EXPERTS), 60 * TOP_K / EXPERTS), np.full((1, EXPERTS), 60 / EXPERTS),
                           [[0]]], 1).astype(np.float32)
    assert float(RouterBalance(EXPERTS, TOP_K)(Tensor(even))[0].asnumpy()) == pytest.approx(TOP_K)


def moe_model(aux_loss_factor):
    np.random.seed(4)
    config = LlamaConfig(seq_length=8, hidden_size=16, num_layers=3, num_heads=2, vocab_size=40,
                         intermediate_size=24, compute_dtype="float32",
                         moe_config={"expert_num": 4, "num_experts_chosen": 2, "first_k_dense_replace": 1,
                                     "moe_intermediate_size": 8, "aux_loss_factor": aux_loss_factor})
    model = LlamaForCausalLM(config)
    model.set_train(True)
    return model


def test_first_k_dense_replace_keeps_dense_leading_layers_and_the_loss_gains_the_aux_term():
    model = moe_model(0.5)
    shapes = {p.name: p.shape for p in model.get_parameters()}
    assert shapes["model.layers.0.feed_forward.w1.weight"] == (24, 16)
    assert shapes["model.layers.1.feed_forward.ffn.w1.weight"] == (4, 8, 16)
    assert "model.layers.0.feed_forward.router.dense.weight" not in shapes
    rows = Tensor(np.random.default_rng(0).integers(1, 40, (2, 9)).astype(np.int32))
    loss, metrics = model(rows)
    recorded = model.step_metrics(metrics.asnumpy())
    assert len(recorded["expert_load"]) == 2 and recorded["dropped_tokens"] > 0  # capacity_factor 1.1 by default
    without, _ = moe_model(0.0)(rows)  # the same weights, the language-model loss alone
    assert float(loss.asnumpy()) == pytest.approx(float(without.asnumpy()) + 0.5 * recorded["aux_loss"], rel=1e-6)


@pytest.mark.parametrize("section,fragment", [
    ({"expert_num": 8, "num_experts_chosen": 9}, "moe_config.num_experts_chosen: expected an integer from 1 to "
                                                 "expert_num (8)"),
    ({"expert_num": 8, "capacity_factor": "big"}, "moe_config.capacity_factor: expected a number"),
    ({"expert_num": 8, "routing_policy": "TopkRouterV3"}, "moe_config.routing_policy: expected one of"),
    ({"expert_num": 8, "router_dense_type": "int8"}, "moe_config.router_dense_type: expected one of"),
    ({"expert_num": 8, "shared_expert_num": 2}, "moe_config.shared_expert_num: shared experts is not implemented"),
    ({"expert_num": 8, "topk_method": "group_limited_greedy"}, "moe_config.topk_method: group-limited top-k"),
    ({"expert_num": 8, "z_loss_factor": 0.001}, "moe_config.z_loss_factor: the router z-loss is not implemented"),
    ({"expert_num": 8, "balance_via_topk_bias": True}, "moe_config.balance_via_topk_bias"),
    ({"expert_num": 8, "expert_group_size": 64}, "moe_config.expert_group_size"),
    ({"expert_num": 8, "num_experts": 8}, "moe_config.num_experts: unknown key"),
])
def test_bad_moe_config_is_one_line_naming_the_key(section, fragment):
    with pytest.raises(ConfigError, match=None) as caught:
        read_moe_config(section)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_mindformers_recipe_keys_are_read_and_expert_num_1_is_dense():
    recipe = {"expert_num": 8, "capacity_factor": 1.1, "aux_loss_factor": 0.05, "num_experts_chosen": 2,
              "routing_policy": "TopkRouterV2", "enable_sdrop": True, "router_dense_type": "float32",
              "use_fused_ops_topkrouter": False, "balance_via_topk_bias": False, "topk_bias_update_rate": 0.001,
              "use_allgather_dispatcher": False, "shared_expert_num": 0, "moe_intermediate_size": None}
    moe = read_moe_config(recipe)
    assert (moe.expert_num, moe.top_k, moe.capacity_factor, moe.aux_loss_factor, moe.drop_by_position) == \
        (8, 2, 1.1, 0.05, True)
    assert moe.capacity(4096) == math.ceil(2 * 4096 * 1.1 / 8) and moe.capacity(4096, training=False) == 4096
    assert read_moe_config({"expert_num": 1}) is None and read_moe_config(None) is None


def test_a_moe_config_inside_model_config_overrides_the_top_level_one_key_by_key():
    """The shipped Mixtral YAML's moe_config is top-level; a user's model_config.moe_config with one key changes
    that key and keeps the experts (replacing the whole section would leave expert_num 1: a dense model)."""
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    from mindformers.trainer.causal_language_modeling import build_model_config  # noqa: E501 pylint: disable=import-outside-toplevel
    config = MindFormerConfig(f"{REPO}/configs/mixtral/pretrain_mixtral_tiny.yaml")
    config.merge_from_dict({"model.model_config.moe_config": {"capacity_factor": 2.0}})
    moe = build_model_config(config).moe
    assert (moe.expert_num, moe.top_k, moe.capacity_factor, moe.drop_by_position) == (8, 2, 2.0, True)


def test_a_partial_moe_config_in_python_changes_those_keys_of_the_family_default():
    """MixtralConfig(moe_config={...}) in Python behaves as the YAML section does: the given keys change, the
    experts stay (a replaced dict would default expert_num to 1, a dense model)."""
    from mindformers.models import MixtralConfig  # pylint: disable=import-outside-toplevel
    moe = MixtralConfig(num_layers=2, moe_config={"capacity_factor": 1.5}).moe
    assert (moe.expert_num, moe.top_k, moe.capacity_factor) == (8, 2, 1.5)
    assert MixtralConfig(num_layers=2).moe.capacity_factor <= 0  # the default stays dropless


def test_expert_parallel_must_fit_the_mesh_and_the_experts():
    moe_config = LlamaConfig(num_layers=2, moe_config={"expert_num": 6, "num_experts_chosen": 2})
    dense = LlamaConfig(num_layers=2)
    with pytest.raises(ConfigError, match="expert_parallel: 2 needs a mixture-of-experts model"):
        check_expert_split(ParallelSettings(data_parallel=2, expert_parallel=2), dense)
    with pytest.raises(ConfigError, match=r"expert_parallel: 4 does not divide data_parallel \(2\)"):
        check_expert_split(ParallelSettings(data_parallel=2, expert_parallel=4), moe_config)
    with pytest.raises(ConfigError, match=r"expert_parallel: 4 does not divide moe_config.expert_num \(6\)"):
        check_expert_split(ParallelSettings(data_parallel=4, expert_parallel=4), moe_config)
    check_expert_split(ParallelSettings(data_parallel=4, expert_parallel=2), moe_config)
    moe_config.pet_config = {"pet_type": "lora"}
    with pytest.raises(ConfigError, match="pet_config: LoRA/prefix tuning with parallel_config.expert_parallel 2"):
        check_device(ParallelSettings(data_parallel=2, expert_parallel=2), moe_config, "CPU")


def test_experts_are_gated_mlps_without_biases_and_only_an_architecture_with_experts_writes_them():
    """Each expert is a gated MLP without biases (Mixtral's); an HF architecture without experts, in the Llama layout
    or outside it (Bloom), refuses a mixture of experts instead of writing a checkpoint without them."""
    moe = {"expert_num": 4, "num_experts_chosen": 2}
    with pytest.raises(ConfigError, match="model.model_config.gated_mlp: expected True with moe_config"):
        LlamaConfig(num_layers=2, gated_mlp=False, moe_config=moe)
    with pytest.raises(ConfigError, match="model.model_config.mlp_has_bias: expected False with moe_config"):
        LlamaConfig(num_layers=2, mlp_has_bias=True, moe_config=moe)
    for name, config in (("llama", LlamaConfig(num_layers=2, moe_config=moe)),
                         ("bloom", BloomConfig(num_layers=2, gated_mlp=True, mlp_has_bias=False, moe_config=moe))):
        with pytest.raises(ConfigError, match="model_config.moe_config: HF .* has no mixture of experts"):
            get_family(name).config_to_hf(config, "F32")


MISTAKES = [
    ({"moe_config": {"shared_expert_num": 2}}, "moe_config.shared_expert_num: shared experts is not implemented here"),
    ({"moe_config": {"capacity": 2.0}}, "moe_config.capacity: unknown key"),
    ({"model": {"model_config": {"moe_config": {"expert_num": 8, "num_experts_chosen": 0}}}},
     "model.model_config.moe_config.num_experts_chosen: expected an integer from 1 to expert_num (8)"),
]
MESH_MISTAKE = ({"parallel_config": {"data_parallel": 3, "expert_parallel": 3}},
                "parallel_config.expert_parallel: 3 does not divide moe_config.expert_num (8)")


@pytest.mark.parametrize("run,sections,fragment", [("train", *case) for case in MISTAKES] +
                         [("dry_run", *case) for case in MISTAKES + [MESH_MISTAKE]])
def test_moe_mistakes_in_a_run_config_stop_it_in_one_line(run, sections, fragment, tmp_path, capsys, sp_model_file,
                                                          wiki_mindrecord):
    config = write_user_config(tmp_path / "run.yaml", "mixtral/pretrain_mixtral_tiny.yaml", sp_model_file,
                               train_dataset={"data_loader": {"dataset_dir": wiki_mindrecord}}, **sections)
    extra = ["--dry_run", "--device_num", "3"] if run == "dry_run" else ["--output_dir", tmp_path / "out"]
    code, _, err = run_main(["--config", config, "--run_mode", "train", *extra], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    # A run names the user's file, then the key; the dry run (main's too) names only the key.
    assert lines[0].startswith(f"error: {config}: {fragment}" if run == "train" else f"error: {fragment}"), lines[0]
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_expert_groups_are_blocks_of_data_parallel_ranks():
    """dp 4 x mp 2 (rank = data * 2 + model), expert_parallel 2: data indices {0, 1} and {2, 3} exchange tokens;
    a rank's experts are those of its data index mod 2, held again in the other block."""
    settings = ParallelSettings(data_parallel=4, model_parallel=2, expert_parallel=2)
    assert expert_group_ranks(0, settings) == ([0, 2], [0, 1, 2, 3], [0, 4])
    assert expert_group_ranks(3, settings) == ([1, 3], [0, 1, 2, 3], [3, 7])
    assert expert_group_ranks(6, settings) == ([4, 6], [4, 5, 6, 7], [2, 6])
    assert settings.mesh()["expert_parallel"] == 2
    assert "expert_parallel" not in ParallelSettings(data_parallel=4).mesh()  # dense meshes record what they did
