"""load_checkpoint_for with auto_trans_ckpt: a checkpoint split for one mesh loads into the networks of another
(mp 2 -> 1, 1 -> 2, dp changes, pipeline partitions), weights and optimizer state equal to the whole checkpoint's
slices; without auto_trans_ckpt a rank loads only a file from its own place in the same mesh."""
import shutil

import mindspore as ms
import numpy as np
import pytest

from mindformers.checkpoint.checkpoint_source import CheckpointSource
from mindformers.checkpoint.transform import mesh_records, write_distributed
from mindformers.models.modules.layout import parameter_layouts
from mindformers.parallel import ParallelSettings
from mindformers.pet import apply_pet, is_pet_parameter
from mindformers.pet.pet_config import parse_pet_config
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerConfig
from mindformers.trainer.checkpoint_loading import load_checkpoint_for
from tests.checkpoint.tiny_checkpoint import (arrays, declared, full, mesh, tiny_network,  # noqa: F401  (fixtures)
                                             train_cell)


@pytest.fixture(scope="module")
def saved(full, declared, tmp_path_factory):
    """The whole checkpoint and its splits for a few meshes: {name: path}."""
    folder = tmp_path_factory.mktemp("saved")
    paths = {"full": full}
    for dp, mp, pp in [(1, 2, 1), (2, 2, 1), (1, 2, 2)]:
        source = CheckpointSource(full)
        paths[f"{dp}{mp}{pp}"] = str(folder / f"split_{dp}{mp}{pp}")
        write_distributed(source, mesh_records(source, mesh(dp, mp, pp), declared), paths[f"{dp}{mp}{pp}"],
                          progress=False)
    return paths


def run_config(**flags):
    return MindFormerConfig(**flags)


def expected_piece(whole, name, split_dim, model_parallel, model_rank):
    if split_dim is None or model_parallel == 1:
        return whole
    return np.split(whole, model_parallel, axis=split_dim)[model_rank]


def assert_holds_slices(cell, network, whole, model_parallel, model_rank):
    declared = parameter_layouts(network)
    for param in cell.get_parameters():
        weight = param.name.split(".", 1)[1] if param.name.startswith("adam_") else param.name
        expected = expected_piece(whole[param.name], param.name, declared.get(weight), model_parallel, model_rank)
        assert np.array_equal(param.asnumpy(), expected), param.name


@pytest.mark.parametrize("source", ["full", "121", "221", "122"])
@pytest.mark.parametrize("model_parallel,model_rank", [(1, 0), (2, 1), (4, 2)])
def test_weights_load_under_another_mesh(saved, source, model_parallel, model_rank):
    network = tiny_network(model_parallel, model_rank)
    config = run_config(load_checkpoint=saved[source], auto_trans_ckpt=True)
    load_checkpoint_for(network, config, ParallelSettings(model_parallel=model_parallel), model_rank)
    assert_holds_slices(network, network, arrays(saved["full"]), model_parallel, model_rank)


@pytest.mark.parametrize("source,data_parallel,rank", [("121", 1, 0), ("221", 1, 1), ("full", 2, 3)])
def test_resume_loads_optimizer_state_and_counters(saved, source, data_parallel, rank):
    """Resume on a dp x mp=2 mesh from another mesh: moments follow their weights, counters come along."""
    model_rank = rank % 2
    network = tiny_network(2, model_rank)
    cell = train_cell(network)
    config = run_config(load_checkpoint=saved[source], auto_trans_ckpt=True, resume_training=True)
    tensors = load_checkpoint_for(network, config, ParallelSettings(data_parallel=data_parallel, model_parallel=2),
                                  rank, resume_cell=cell)
    assert int(tensors["step_num"].asnumpy()) == 7 and int(tensors["epoch_num"].asnumpy()) == 2
    assert_holds_slices(cell, network, arrays(saved["full"]), 2, model_rank)


def test_without_auto_trans_ckpt_a_rank_loads_its_own_file(saved):
    settings = ParallelSettings(model_parallel=2)
    network = tiny_network(2, 1)
    load_checkpoint_for(network, run_config(load_checkpoint=saved["121"]), settings, 1)
    assert_holds_slices(network, network, arrays(saved["full"]), 2, 1)


def test_without_auto_trans_ckpt_other_meshes_are_refused(saved):
    config = run_config(load_checkpoint=saved["121"])
    with pytest.raises(ConfigError, match="model_parallel=2 pipeline_stage=1 .*this run uses data_parallel=1 "
                                          "model_parallel=1.*set auto_trans_ckpt True"):
        load_checkpoint_for(tiny_network(), config, ParallelSettings(), 0)
    with pytest.raises(ConfigError, match="holds whole tensors, but this run .*model_parallel=2.* holds shards"):
        load_checkpoint_for(tiny_network(2, 0), run_config(load_checkpoint=saved["full"]),
                            ParallelSettings(model_parallel=2), 0)
    rank_0_file = CheckpointSource(saved["121"]).ranks[0].path
    with pytest.raises(ConfigError, match="holds rank 0's shards .*this is rank 1 .*pass the folder"):
        load_checkpoint_for(tiny_network(2, 1), run_config(load_checkpoint=rank_0_file),
                            ParallelSettings(model_parallel=2), 1)


def test_model_of_another_size_is_refused(saved):
    config = run_config(load_checkpoint=saved["121"], auto_trans_ckpt=True)
    with pytest.raises(ConfigError, match=r"tensor 'model.tok_embeddings.embedding_weight' has global shape "
                                          r"\(64, 32\), the model expects \(96, 32\)"):
        load_checkpoint_for(tiny_network(vocab_size=96), config, ParallelSettings(), 0)


def test_resume_name_takes_that_save_from_every_rank(saved, tmp_path):
    """A newer save sits beside the named one: the name (rank 0's) picks its save on every rank, the default the
    newest, with or without auto_trans_ckpt."""
    folder = tmp_path / "checkpoint"
    shutil.copytree(saved["121"], folder)
    for rank in (0, 1):
        tensors = ms.load_checkpoint(str(folder / f"rank_{rank}" / f"tiny_rank_{rank}-2_7.ckpt"))
        tensors["step_num"] = ms.Parameter(ms.Tensor(np.array(9, np.int64)), name="step_num")
        ms.save_checkpoint([{"name": k, "data": v} for k, v in tensors.items()],
                           str(folder / f"rank_{rank}" / f"tiny_rank_{rank}-3_9.ckpt"))

    def resumed_step(settings, rank, **flags):
        network = tiny_network(settings.model_parallel, rank % settings.model_parallel)
        config = run_config(load_checkpoint=str(folder), **flags)
        return int(load_checkpoint_for(network, config, settings, rank, resume_cell=train_cell(network))[
            "step_num"].asnumpy())

    named = {"resume_training": "tiny_rank_0-2_7.ckpt"}
    assert resumed_step(ParallelSettings(), 0, auto_trans_ckpt=True, resume_training=True) == 9
    assert resumed_step(ParallelSettings(), 0, auto_trans_ckpt=True, **named) == 7
    assert resumed_step(ParallelSettings(model_parallel=2), 1, resume_training=True) == 9
    assert resumed_step(ParallelSettings(model_parallel=2), 1, **named) == 7


def test_lora_network_takes_its_base_weights_from_a_split_checkpoint(saved):
    """Fine-tuning with LoRA from a model-parallel checkpoint: base weights resharded, adapters left at their init."""
    network = tiny_network()
    apply_pet(network, parse_pet_config({"pet_type": "lora", "lora_rank": 2, "target_modules": ".*wq|.*wv"}))
    adapters = {p.name: p.asnumpy().copy() for p in network.get_parameters() if is_pet_parameter(p.name)}
    assert adapters
    load_checkpoint_for(network, run_config(load_checkpoint=saved["122"], auto_trans_ckpt=True), ParallelSettings(), 0)
    whole = arrays(saved["full"])
    for param in network.get_parameters():
        expected = adapters[param.name] if is_pet_parameter(param.name) else whole[param.name]
        assert np.array_equal(param.asnumpy(), expected), param.name
