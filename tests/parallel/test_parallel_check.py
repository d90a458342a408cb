"""Parallel config checks: each mistake is one ConfigError line, raised before anything is built."""
import pytest

from mindformers.models.llama import LlamaConfig
from mindformers.parallel import ParallelSettings, check_parallel_config, parallel_settings
from mindformers.parallel.parallel_check import rank_batch_size
from mindformers.parallel.world import data_parallel_rank
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerConfig


def model(**sizes):
    values = dict(seq_length=16, hidden_size=64, num_layers=4, num_heads=8, n_kv_heads=4, intermediate_size=128,
                  vocab_size=512)
    values.update(sizes)
    return LlamaConfig(**values)


def config(dp=1, mp=1, pp=1, micro=1, **runner):
    return MindFormerConfig(parallel_config={"data_parallel": dp, "model_parallel": mp, "pipeline_stage": pp,
                                             "micro_batch_num": micro},
                            runner_config=dict({"batch_size": 2}, **runner), parallel={"full_batch": False})


def error(cfg, mdl, world, device="Ascend"):
    with pytest.raises(ConfigError) as caught:
        check_parallel_config(cfg, mdl, world, device)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_valid_mesh_passes_and_reads_settings():
    settings = check_parallel_config(config(dp=2, mp=4, pp=2, micro=4), model(), 16, "Ascend")
    assert settings.device_num == 16 and settings.micro_batch_num == 4
    assert check_parallel_config(config(dp=2), model(), 2, "CPU").data_parallel == 2


def test_worker_count_must_equal_the_mesh():
    message = error(config(dp=2, mp=2), model(), 2)
    assert "= 4 devices, but 2 worker(s)" in message


@pytest.mark.parametrize("key,sizes", [("num_heads", dict(num_heads=4, n_kv_heads=4, hidden_size=32)),
                                       ("n_kv_heads", dict(n_kv_heads=2)),
                                       ("intermediate_size", dict(n_kv_heads=8, intermediate_size=132)),
                                       ("vocab_size", dict(n_kv_heads=8, vocab_size=510))])
def test_model_sizes_must_split_over_model_parallel(key, sizes):
    mdl = model(**sizes)
    message = error(config(mp=8 if key != "vocab_size" else 4), mdl, 8 if key != "vocab_size" else 4)
    assert message.startswith(f"model.model_config.{key}:") and "model_parallel" in message


def test_pipeline_needs_enough_layers_and_micro_batches():
    assert "num_layers is 4" in error(config(pp=8, micro=8), model(), 8)
    assert "micro_batch_num: 2 is less than pipeline_stage (4)" in error(config(pp=4, micro=2), model(), 4)


def test_global_batch_must_split_over_data_parallel():
    assert "global_batch_size: 6 is not divisible by data_parallel (4)" in error(
        config(dp=4, global_batch_size=6, batch_size=None), model(), 4)
    assert "gives 8, but global_batch_size is 4" in error(config(dp=2, global_batch_size=4, batch_size=4), model(), 2)


def test_batch_semantics_per_rank_and_global():
    # runner_config.batch_size is per data-parallel rank; global_batch_size is split over dp x accumulation.
    assert rank_batch_size(config(dp=4), ParallelSettings(data_parallel=4)) == 2
    assert rank_batch_size(config(dp=2, global_batch_size=8, batch_size=None, gradient_accumulation_steps=2),
                           ParallelSettings(data_parallel=2)) == 2


def test_cpu_runs_data_model_and_pipeline_parallel():
    assert check_parallel_config(config(dp=2, mp=2), model(), 4, "CPU").model_parallel == 2
    assert check_parallel_config(config(dp=2, pp=2, micro=3), model(), 4, "CPU").pipeline_stage == 2
    assert check_parallel_config(config(mp=2), model(pet_config={"pet_type": "lora"}), 2, "CPU").model_parallel == 2


def test_cpu_refuses_what_it_cannot_split():
    seq = config(mp=2)
    seq.parallel_config.use_seq_parallel = True
    assert error(seq, model(pet_config={"pet_type": "lora"}), 2, "CPU").startswith(
        "model.model_config.pet_config: LoRA/prefix tuning with parallel_config.use_seq_parallel is not available")
    assert error(config(mp=2), model(pet_config={"pet_type": "prefixtuning", "mid_dim": 8}), 2, "CPU").startswith(
        "model.model_config.pet_config.mid_dim: prefix projection with parallel_config.model_parallel 2 is not")
    sharded = config(dp=4)
    sharded.parallel = {"enable_parallel_optimizer": True, "parallel_optimizer_config": {
        "optimizer_weight_shard_size": 2}}
    assert error(sharded, model(), 4, "CPU").startswith(
        "parallel.parallel_optimizer_config.optimizer_weight_shard_size: 2 is not available on CPU")



def test_impossible_pipeline_configs_are_one_line_errors():
    assert error(config(pp=2, micro=2), model(pet_config={"pet_type": "lora"}), 2, "CPU") == (
        "model.model_config.pet_config: LoRA/prefix tuning with parallel_config.pipeline_stage 2 is not available "
        "on CPU; set pipeline_stage to 1")
    moe = model(moe_config={"expert_num": 4, "num_experts_chosen": 2})
    assert error(config(pp=2, micro=2), moe, 2, "CPU") == (
        "parallel_config.pipeline_stage: 2 stages of a mixture-of-experts model are not available on CPU; set "
        "pipeline_stage to 1")
    # batch_size is one micro-batch's: the global batch splits over dp x accumulation x micro_batch_num
    assert error(config(dp=2, pp=2, micro=3, global_batch_size=8, batch_size=None), model(), 4, "CPU") == (
        "runner_config.global_batch_size: 8 is not divisible by data_parallel (2) x gradient_accumulation_steps (1) "
        "x micro_batch_num (3)")
    assert rank_batch_size(config(dp=2, pp=2, micro=3, global_batch_size=12, batch_size=None),
                           ParallelSettings(data_parallel=2, pipeline_stage=2, micro_batch_num=3)) == 2


def test_bad_values_are_one_line():
    cfg = MindFormerConfig(parallel_config={"data_parallel": 0})
    with pytest.raises(ConfigError, match="parallel_config.data_parallel: expected a positive integer"):
        parallel_settings(cfg)


def test_data_parallel_rank_follows_mindspore_device_order():
    settings = ParallelSettings(data_parallel=2, model_parallel=2, pipeline_stage=2)
    assert [data_parallel_rank(r, settings) for r in range(8)] == [0, 0, 1, 1, 0, 0, 1, 1]
