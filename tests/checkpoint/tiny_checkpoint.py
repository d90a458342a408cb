"""A tiny Llama (3 layers: two pipeline stages get uneven shares) with AdamW state, saved whole as a training run's
checkpoint would hold it; what the resharding tests split, merge and load, and how they read files back bit for bit."""
import mindspore as ms
import numpy as np
import pytest

from mindformers.checkpoint.ckpt_stream import read_ckpt
from mindformers.core.optim.adamw import AdamW
from mindformers.models.modules.layout import parameter_layouts
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.parallel.groups import ParallelGroups
from mindformers.parallel.parallelize import parallelize
from mindformers.wrapper.train_one_step import MFTrainOneStepCell

SIZES = dict(seq_length=8, hidden_size=32, num_layers=3, num_heads=4, n_kv_heads=4, intermediate_size=64,
             vocab_size=64)
MESH_KEYS = ("data_parallel", "model_parallel", "pipeline_stage")


def mesh(dp, mp, pp):
    return dict(zip(MESH_KEYS, (dp, mp, pp)))


def tiny_network(model_parallel=1, model_rank=0, dtype="float32", **overrides):
    """The network one rank of a model-parallel run builds (its own shards), in a single process."""
    config = LlamaConfig(compute_dtype="float32", param_init_type=dtype, **dict(SIZES, **overrides))
    return parallelize(LlamaForCausalLM(config), ParallelGroups(model_parallel=model_parallel, model_rank=model_rank))


def train_cell(network):
    return MFTrainOneStepCell(network, AdamW(network.trainable_params()))


def save_training_checkpoint(path, dtype="float32", seed=0, **sizes):
    """Weights, AdamW moments (random, so every tensor differs), counters: one whole .ckpt."""
    np.random.seed(seed)
    cell = train_cell(tiny_network(dtype=dtype, **sizes))
    for param in cell.get_parameters():
        if param.name.startswith(("adam_m.", "adam_v.")):
            values = np.random.randn(*param.shape).astype(np.float32)
            param.set_data(ms.Tensor(values, param.dtype))
    ms.save_checkpoint(cell, str(path), append_dict={"step_num": 7, "epoch_num": 2, "loss_scale": 1.0})
    return str(path)


def raw_tensors(path):
    """name -> (dtype, shape, bytes) of every tensor of a .ckpt, read without any conversion."""
    return {name: (info.dtype, info.shape, info.read().tobytes()) for name, info in read_ckpt(str(path)).items()}


def arrays(path):
    """name -> numpy array (bf16 as its uint16 bits)."""
    return {name: info.read() for name, info in read_ckpt(str(path)).items()}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A whole training checkpoint named as a run's rank 0 file at epoch 2, step 7."""
    return save_training_checkpoint(tmp_path_factory.mktemp("full") / "tiny_rank_0-2_7.ckpt")


@pytest.fixture(scope="module")
def declared():
    """{weight: split dim} as the tiny model's layers declare them."""
    return parameter_layouts(tiny_network())
