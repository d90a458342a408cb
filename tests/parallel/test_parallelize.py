"""The parallelize step in one process (PyNative, no compilation): a plain model is built whole whatever the mesh,
parallelize splits it for one rank, and a rank that defers its initial values draws exactly the single process'
values, only its slices. The split models' numerics are test_tensor_parallel.py's and the msrun tests'."""
import numpy as np
import mindspore as ms
import pytest

from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.models.modules import deferred_init
from mindformers.models.modules.deferred_init import DeferredNormal
from mindformers.models.modules.shape_only import initial_values_deferred
from mindformers.parallel.groups import ParallelGroups
from mindformers.parallel.parallelize import parallel_groups_of, parallelize
from mindformers.pet import apply_pet

SIZES = dict(vocab_size=64, seq_length=8, hidden_size=16, num_layers=1, num_heads=4, n_kv_heads=2,
             intermediate_size=24, compute_dtype="float32", param_init_type="float32")
MP2_RANK1 = ParallelGroups(model_parallel=2, model_rank=1)


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_layers_are_built_whole_and_split_by_the_one_step():
    np.random.seed(0)
    with initial_values_deferred():
        model = LlamaForCausalLM(LlamaConfig(**SIZES), {"recompute": True})
    attention = model.model.layers[0].attention
    assert (attention.num_heads, attention.n_kv_heads, attention.wq.weight.shape) == (4, 2, (16, 16))
    assert attention.wq.weight.has_init  # nothing drawn yet
    assert parallel_groups_of(model) == ParallelGroups()
    parallelize(model, MP2_RANK1)
    assert (attention.num_heads, attention.n_kv_heads, attention.wq.weight.shape) == (2, 1, (8, 16))
    assert not any(param.has_init for param in model.get_parameters())
    assert parallel_groups_of(model) is MP2_RANK1
    # the recomputed layer recomputes the collectives its hooks added
    assert attention.wq.copy_input._has_config_recompute  # pylint: disable=protected-access
    with pytest.raises(RuntimeError, match="already parallelized"):
        parallelize(model, MP2_RANK1)
    with pytest.raises(RuntimeError, match="before parallelize"):
        apply_pet(model, {"pet_type": "lora"})


def test_initial_values_are_reproducible_float32_normals():
    np.random.seed(5)
    first = deferred_init.normal_values(0.02, (300, 40))
    np.random.seed(5)
    again = deferred_init.normal_values(0.02, (300, 40))
    other = deferred_init.normal_values(0.02, (300, 40))  # the next weight draws a stream of its own
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and not np.array_equal(first, other)
    assert abs(float(first.std()) - 0.02) < 0.001 and abs(float(first.mean())) < 0.001


def test_draws_in_background_give_the_values_of_draws_in_line():
    shapes = [(300, 40), (7,), (64, 64, 3)]
    np.random.seed(5)
    in_line = [deferred_init.normal_values(0.02, shape) for shape in shapes]
    np.random.seed(5)
    with deferred_init.draws_in_background():
        with deferred_init.draws_in_background():  # a nested use joins the outer one
            drawn = [deferred_init.normal_values(0.02, shape, in_background=True) for shape in shapes]
    for ours, theirs in zip(drawn, in_line):
        np.testing.assert_array_equal(ours, theirs)


def test_a_failed_background_draw_raises_when_the_build_ends(monkeypatch):
    def broken(seed, std, values):
        raise MemoryError("no room")
    monkeypatch.setattr(deferred_init, "_draw_normal", broken)
    with pytest.raises(MemoryError, match="no room"):
        with deferred_init.draws_in_background():
            deferred_init.normal_values(0.02, (3, 3), in_background=True)


def test_a_model_built_twice_from_one_seed_has_the_same_weights_drawn_in_order():
    """Its weights draw in the background; the seeds still follow the build order (the embedding table first)."""
    def build():
        np.random.seed(3)
        return LlamaForCausalLM(LlamaConfig(seq_length=16, hidden_size=32, num_layers=2, num_heads=4,
                                            intermediate_size=48, vocab_size=64))
    first, second = build(), build()
    for ours, theirs in zip(first.get_parameters(), second.get_parameters()):
        np.testing.assert_array_equal(ours.asnumpy(), theirs.asnumpy())
    np.random.seed(3)
    embedding = deferred_init.normal_values(first.config.initializer_range, (64, 32))
    np.testing.assert_array_equal(first.model.tok_embeddings.embedding_weight.asnumpy(), embedding)


@pytest.mark.parametrize("shape,splits", [((6, 4), [(0, 2, 1)]), ((6, 4), [(1, 2, 0)]),
                                          ((4, 6, 2), [(0, 2, 1), (1, 3, 2)]), ((5,), [])])
def test_deferred_values_are_the_eager_values_cut(monkeypatch, shape, splits):
    monkeypatch.setattr(deferred_init, "CHUNK_VALUES", 5)  # several chunks per weight
    np.random.seed(3)
    np.random.normal(0.0, 1.0, size=3)  # leave a cached Gaussian in the legacy generator's state
    eager = deferred_init.normal_values(0.5, shape)
    after = np.random.normal(size=2)
    np.random.seed(3)
    np.random.normal(0.0, 1.0, size=3)
    deferred = DeferredNormal(shape, 0.5)
    np.testing.assert_array_equal(np.random.normal(size=2), after)  # the global stream moved on as if drawn
    expected = eager
    for dim, parts, index in splits:
        expected = np.split(expected, parts, axis=dim)[index]
    np.testing.assert_array_equal(deferred.draw(splits), expected)
