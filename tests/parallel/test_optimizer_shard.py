"""The parallel optimizer on CPU, in one process (PyNative) for 2 data-parallel ranks: each rank's sharded optimizer is
built without a group, so its all-gather returns the rank's updated slice among zeros, and the ranks' weights summed
are the gathered weights. They, and the ranks' moment slices joined, equal what the whole AdamW computes; the
moments keep AdamW's names. Real communication is the msrun test (test_msrun_four_workers.py)."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Parameter, ParameterTuple, Tensor, nn

from mindformers.checkpoint.tensor_pieces import Piece
from mindformers.core.optim.adamw import AdamW
from mindformers.parallel import ParallelSettings
from mindformers.parallel.groups import ParallelGroups
from mindformers.parallel.layout_file import (check_checkpoint_strategy, mesh_record, optimizer_piece,
                                              write_layout_file)
from mindformers.parallel.optimizer_shard import DataParallelShardedOptimizer, sharded_state_names
from mindformers.tools.errors import ConfigError

RNG = np.random.default_rng(2)
# The norm first: AdamW's weight-decay groups put the matrix first, and the gradients follow the optimizer's order.
SHAPES = {"layers.0.norm.weight": (4,), "layers.0.w.weight": (6, 4), "tiny.bias": (3,)}
ORDER = ["layers.0.w.weight", "layers.0.norm.weight", "tiny.bias"]
SETTINGS = ParallelSettings(data_parallel=2, optimizer_shard=True, optimizer_shard_threshold_kb=0.05)  # 51 bytes


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def params(values):
    return [Parameter(Tensor(value), name=name) for name, value in values.items()]


class Holder(nn.Cell):
    def __init__(self, parameters):
        super().__init__()
        self.held = ParameterTuple(parameters)


def sharded_names(values, settings=SETTINGS):
    return sharded_state_names(Holder(params(values)), settings)


def adamw(parameters):
    return AdamW(parameters, learning_rate=0.1, weight_decay=0.1)


def test_ranks_update_their_slices_to_the_whole_optimizers_result():
    initial = {name: RNG.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}
    steps = [[Tensor(RNG.standard_normal(SHAPES[name]).astype(np.float32)) for name in ORDER] for _ in range(2)]
    whole = adamw(params(initial))
    assert [p.name for p in whole.parameters] == ORDER
    for grads in steps:
        whole(tuple(grads))
    ranks = []
    for rank in range(2):
        sharded = DataParallelShardedOptimizer(params(initial), adamw, sharded_names(initial),
                                               ParallelGroups(data_parallel=2, data_rank=rank))
        assert [p.name for p in sharded.parameters] == ORDER
        assert sharded.sharded == (True, False, False)  # the norm (16 bytes) and the odd bias under the threshold
        for grads in steps:
            sharded(tuple(grads))
        ranks.append(sharded)
    for index in range(len(ORDER)):
        expected = whole.parameters[index].asnumpy()
        got = [r.parameters[index].asnumpy() for r in ranks]
        if index == 0:
            np.testing.assert_allclose(got[0] + got[1], expected, rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(got[0][3:], 0)  # rank 0's gather holds only its rows before the sum
        else:
            for value in got:
                np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7)
    moments = [{p.name: p.asnumpy() for p in r.optimizer.moments1} for r in ranks]
    assert set(moments[0]) == {f"adam_m.{name}" for name in SHAPES}
    whole_moments = {p.name: p.asnumpy() for p in whole.moments1}
    np.testing.assert_allclose(np.concatenate([m["adam_m.layers.0.w.weight"] for m in moments]),
                               whole_moments["adam_m.layers.0.w.weight"], rtol=1e-6)
    assert moments[0]["adam_m.layers.0.w.weight"].shape == (3, 4)


def test_a_parameter_that_does_not_split_is_a_one_line_error():
    settings = ParallelSettings(data_parallel=4, optimizer_shard=True, optimizer_shard_threshold_kb=0)
    values = {"layers.0.w.weight": np.zeros((6, 4), np.float32)}
    with pytest.raises(ConfigError) as caught:
        DataParallelShardedOptimizer(params(values), adamw, sharded_names(values, settings),
                                     ParallelGroups(data_parallel=4))
    message = str(caught.value)
    assert message.startswith("parallel.enable_parallel_optimizer: parameter layers.0.w.weight of shape (6, 4) does "
                              "not split into data_parallel (4) equal parts along dimension 0") and "\n" not in message


def test_optimizer_state_splits_the_weights_piece_further_along_dimension_0():
    column = Piece.split((8, 4), [(0, 2, 1)])  # model-parallel part 1 of the rows
    assert optimizer_piece(column, 2, 1).bounds() == [(6, 8), (0, 4)]
    row = Piece.split((8, 4), [(1, 2, 0)])
    assert optimizer_piece(row, 2, 1).bounds() == [(4, 8), (0, 2)]
    assert optimizer_piece(row, 1, 0) == row


def test_resuming_without_resharding_needs_the_same_optimizer_split(tmp_path):
    """Without auto_trans_ckpt a resume must find the moments split as this run splits them, and its own slice."""
    mesh = {"data_parallel": 2, "model_parallel": 1, "pipeline_stage": 1}
    entry = {"shape": [6, 4], "dtype": "Float32", "split_dim": None, "parts": 1, "optimizer_parts": 2}
    write_layout_file(str(tmp_path), mesh_record({"layers.0.w.weight": entry}, mesh, 1))
    checkpoint = str(tmp_path / "run_rank_1-1_3.ckpt")
    whole = ParallelSettings(data_parallel=2)
    message = str(pytest.raises(ConfigError, check_checkpoint_strategy, checkpoint, whole, 1, with_state=True).value)
    assert "holds optimizer state split over 2 data-parallel rank(s)" in message and "auto_trans_ckpt" in message
    sharded = ParallelSettings(data_parallel=2, optimizer_shard=True)
    message = str(pytest.raises(ConfigError, check_checkpoint_strategy, checkpoint, sharded, 0, with_state=True).value)
    assert "holds rank 1's slice of the optimizer state, this is rank 0" in message and "\n" not in message
    assert check_checkpoint_strategy(checkpoint, sharded, 1, with_state=True) == mesh
    assert check_checkpoint_strategy(checkpoint, whole, 0) == mesh  # weights alone: replicas are interchangeable
