"""MindFormers' `moe_config` (top-level in its YAMLs, or inside model_config) read into the settings the shared
decoder's mixture-of-experts feed-forward is built from.

Every MindFormers MoEConfig key is known here, in one of three kinds:
- implemented: it changes the model as MindFormers documents;
- execution only: it selects how Ascend computes the same thing (fused kernels, dispatcher, overlap); accepted;
- not implemented: accepted at its neutral value, any other value is a one-line error naming the key.
An unknown key is an error too, so no setting is ever silently ignored.
"""
from dataclasses import dataclass
from typing import Optional

from mindformers.models.modules.moe import expert_capacity
from mindformers.tools.errors import ConfigError

ROUTING_POLICIES = ("TopkRouterV1", "TopkRouterV2")  # MindFormers: V2 is a faster, mathematically equal V1
ROUTER_DTYPES = ("float32", "float16", "bfloat16")

# key -> why it does not change what is computed
EXECUTION_ONLY = {
    "use_fused_ops_topkrouter": "fused Ascend kernels for the dispatch/combine indices",
    "use_allgather_dispatcher": "Ascend's choice of token dispatcher (this trainer always gathers tokens)",
    "group_wise_a2a": "grouping of Ascend's all-to-all",
    "comp_comm_parallel": "overlap of expert compute and communication",
    "comp_comm_parallel_degree": "overlap of expert compute and communication",
    "max_router_load": "a buffer size of Ascend's routing kernels",
    "save_token_distribution": "tokens per expert are always logged (train_metrics.jsonl expert_load)",
    "cur_layer": "set per layer by MindFormers itself",
    "moe_module_name": "a name",
}

# key -> (neutral values, what it would ask for); a value outside the neutral ones is refused.
NOT_IMPLEMENTED = {
    "expert_group_size": ((None,), "routing groups other than one data-parallel rank's batch"),
    "enable_cold_hot_expert": ((False,), "hot/cold expert placement"),
    "shared_expert_num": ((0,), "shared experts"),
    "use_shared_expert_gating": ((False,), "shared-expert gating"),
    "topk_method": (("greedy",), "group-limited top-k routing"),
    "topk_group": ((None,), "group-limited top-k routing"),
    "n_group": ((None,), "group-limited top-k routing"),
    "aux_loss_types": ((None, []), "device- and communication-balance losses (aux_loss_factor is the expert "
                                   "balance loss)"),
    "aux_loss_factors": ((None, []), "device- and communication-balance losses"),
    "z_loss_factor": ((0, 0.0), "the router z-loss"),
    "balance_via_topk_bias": ((False,), "auxiliary-loss-free balancing by top-k bias"),
    "moe_shared_expert_overlap": ((False,), "shared experts"),
    "expert_model_parallel": ((None,), "a separate expert model-parallel size"),
    "use_gating_sigmoid": ((False,), "sigmoid gating"),
}
# Keys that only tune a feature refused above: any value is neutral while that feature is off.
TUNES = {"update_step": "enable_cold_hot_expert", "hot_expert_num": "enable_cold_hot_expert",
         "cold_token_percent": "enable_cold_hot_expert", "topk_bias_update_rate": "balance_via_topk_bias"}

IMPLEMENTED = ("expert_num", "num_experts_chosen", "capacity_factor", "aux_loss_factor", "routing_policy",
               "norm_topk_prob", "enable_sdrop", "router_dense_type", "routed_scaling_factor",
               "moe_intermediate_size", "first_k_dense_replace")
KNOWN = set(IMPLEMENTED) | set(EXECUTION_ONLY) | set(NOT_IMPLEMENTED) | set(TUNES)


@dataclass(frozen=True)
class MoESettings:
    """The mixture-of-experts feed-forward of a decoder, in the terms the layers use.

    expert_num experts, each the family's gated MLP of width `intermediate_size` (moe_intermediate_size when
    given); a router (linear, softmax in router_dtype) sends each token to its `top_k` most probable experts with
    those probabilities renormalised to sum to 1 (norm_topk_prob, as Mixtral) and scaled by routed_scaling_factor.
    capacity_factor > 0 caps each expert at ceil(top_k * tokens * capacity_factor / expert_num) tokens of a
    data-parallel rank's batch in training; the rest are dropped (the residual carries them), first the later
    tokens of the batch with enable_sdrop (Megatron's "position" policy), otherwise the later choices (all first
    choices are placed before any second choice). capacity_factor <= 0 is dropless, and so is inference always.
    aux_loss_factor weighs the load-balancing loss (Switch Transformer's, as transformers' Mixtral computes it over
    all layers). The first `first_k_dense_replace` layers keep a dense gated MLP."""

    expert_num: int
    top_k: int
    capacity_factor: float
    aux_loss_factor: float
    norm_topk_prob: bool
    drop_by_position: bool
    router_dtype: str
    routed_scaling_factor: float
    intermediate_size: Optional[int]
    first_k_dense_replace: int

    def capacity(self, tokens, training=True):
        """Slots per expert for a batch of `tokens` (its data-parallel rank's); every token fits when dropless."""
        return expert_capacity(tokens, self.top_k, self.expert_num, self.capacity_factor, training)

    def layer_has_experts(self, layer_id):
        return layer_id >= self.first_k_dense_replace


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(value, neutral):
    return value is neutral or (value == neutral and type(value) is type(neutral))  # noqa: E721


def read_moe_config(section, where="moe_config", num_layers=None):
    """MoESettings of a moe_config mapping, or None when it asks for no experts (absent, or expert_num 1)."""
    if section is None:
        return None
    if isinstance(section, MoESettings):
        return section
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping of MindFormers' MoEConfig keys, got {section!r}")
    for key, value in section.items():
        if key not in KNOWN:
            raise ConfigError(f"{where}.{key}: unknown key (expected MindFormers' MoEConfig keys: "
                              f"{', '.join(sorted(KNOWN))})")
        if key in NOT_IMPLEMENTED:
            neutral, feature = NOT_IMPLEMENTED[key]
            if not any(_same(value, n) for n in neutral):
                raise ConfigError(f"{where}.{key}: {feature} is not implemented here (expected "
                                  f"{' or '.join(repr(n) for n in neutral)}); got {value!r}")

    def get(key, default):
        value = section.get(key, default)
        return default if value is None else value

    def fail(key, expected):
        raise ConfigError(f"{where}.{key}: expected {expected}, got {section.get(key)!r}")

    experts = get("expert_num", 1)
    if not _is_int(experts) or experts < 1:
        fail("expert_num", "a positive integer")
    top_k = get("num_experts_chosen", 1)
    if not _is_int(top_k) or not 1 <= top_k <= experts:
        fail("num_experts_chosen", f"an integer from 1 to expert_num ({experts})")
    if experts == 1:
        return None  # MindFormers: expert_num 1 is the dense model
    capacity = get("capacity_factor", 1.1)
    if not _is_number(capacity):
        fail("capacity_factor", "a number (<= 0: dropless)")
    aux = get("aux_loss_factor", 0.05)
    if not _is_number(aux) or aux < 0:
        fail("aux_loss_factor", "a number >= 0")
    if get("routing_policy", "TopkRouterV1") not in ROUTING_POLICIES:
        fail("routing_policy", f"one of {', '.join(ROUTING_POLICIES)}")
    for key, default in (("norm_topk_prob", True), ("enable_sdrop", False)):
        if not isinstance(get(key, default), bool):
            fail(key, "True or False")
    router_dtype = get("router_dense_type", "float32")
    if router_dtype not in ROUTER_DTYPES:
        fail("router_dense_type", f"one of {', '.join(ROUTER_DTYPES)}")
    scale = get("routed_scaling_factor", 1.0)
    if not _is_number(scale) or scale <= 0:
        fail("routed_scaling_factor", "a positive number")
    width = section.get("moe_intermediate_size")
    if width is not None and (not _is_int(width) or width < 1):
        fail("moe_intermediate_size", "a positive integer or null (the experts then use intermediate_size)")
    dense = get("first_k_dense_replace", 0)
    if not _is_int(dense) or dense < 0 or (num_layers is not None and dense >= num_layers):
        bound = f" below num_layers ({num_layers})" if num_layers is not None else ""
        fail("first_k_dense_replace", f"the number of leading layers with a dense MLP (an integer >= 0{bound})")
    return MoESettings(expert_num=experts, top_k=top_k, capacity_factor=float(capacity), aux_loss_factor=float(aux),
                       norm_topk_prob=get("norm_topk_prob", True), drop_by_position=get("enable_sdrop", False),
                       router_dtype=router_dtype, routed_scaling_factor=float(scale), intermediate_size=width,
                       first_k_dense_replace=dense)
