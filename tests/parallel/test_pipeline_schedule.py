"""The 1F1B schedule and the stage transfers, in one process (no msrun).

The schedule is checked as a table (what each stage runs, in which order) and as programs: on every boundary both
sides make the same transfers in the same order, and programs that block on each transfer until the other side
reaches it all finish (no deadlock). Then the real train steps of every stage of a tiny model run in this process,
their all-reduces summed by an in-process driver, against the single-process train step: same loss, gradient norm
and weights, tied embeddings included.
"""
import numpy as np
import mindspore as ms
import pytest
from mindspore import Tensor, nn

from mindformers.models.llama import LlamaConfig, LlamaForCausalLM
from mindformers.parallel import ParallelSettings
from mindformers.parallel.layout_file import layout_record, rank_layout
from mindformers.parallel.pipeline_groups import group_members
from mindformers.parallel.pipeline_schedule import (BACKWARD, FORWARD, TRANSFER, boundary_transfers, bubble_fraction,
                                                    compute_order, stage_program)
from mindformers.parallel.groups import ParallelGroups
from mindformers.parallel.parallelize import parallelize
from mindformers.parallel.pipeline_stage import StageForward, activation_shape, cut_to_stage, stage_layers
from mindformers.wrapper import MFTrainOneStepCell
from mindformers.wrapper.pipeline_train_step import PipelineTrainOneStepCell

MESHES = [(stages, micro) for stages in (2, 3, 4) for micro in (stages, stages + 1, 2 * stages + 1)]


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_1f1b_order_for_two_stages_and_four_micro_batches():
    f, b = FORWARD, BACKWARD
    assert compute_order(2, 4, 0) == [(f, 0), (f, 1), (b, 0), (f, 2), (b, 1), (f, 3), (b, 2), (b, 3)]
    assert compute_order(2, 4, 1) == [(f, 0), (b, 0), (f, 1), (b, 1), (f, 2), (b, 2), (f, 3), (b, 3)]


@pytest.mark.parametrize("stages,micro", MESHES)
def test_every_stage_runs_each_micro_batch_once_in_order_with_at_most_pp_minus_s_in_flight(stages, micro):
    for stage in range(stages):
        order = compute_order(stages, micro, stage)
        assert [i for kind, i in order if kind == FORWARD] == list(range(micro))
        assert [i for kind, i in order if kind == BACKWARD] == list(range(micro))
        in_flight, peak = 0, 0
        for kind, _ in order:
            in_flight += 1 if kind == FORWARD else -1
            peak = max(peak, in_flight)
        assert peak == min(stages - stage, micro)
        program = stage_program(stages, micro, stage)
        assert [(s.kind, s.micro_batch) for s in program if s.kind != TRANSFER] == order


@pytest.mark.parametrize("stages,micro", MESHES)
def test_both_sides_of_each_boundary_make_the_same_transfers(stages, micro):
    programs = [stage_program(stages, micro, stage) for stage in range(stages)]
    for b in range(stages - 1):
        upstream, downstream = programs[b], programs[b + 1]
        assert boundary_transfers(upstream, b) == boundary_transfers(downstream, b)
        sent_down = [s.activation for s in upstream if s.kind == TRANSFER and s.boundary == b and s.sends_activation]
        sent_up = [s.gradient for s in downstream if s.kind == TRANSFER and s.boundary == b and s.sends_gradient]
        assert sent_down == sent_up == list(range(micro))


def blocking_run(programs):
    """Run stage programs as if every transfer waited for its partner: returns the global order of compute steps,
    or fails on a deadlock. A stage's forward of micro-batch i must come after it received i's activation."""
    positions, done, trace = [0] * len(programs), 0, []
    while done < len(programs):
        progressed = False
        for stage, program in enumerate(programs):
            while positions[stage] < len(program) and program[positions[stage]].kind != TRANSFER:
                trace.append((stage,) + (program[positions[stage]].kind, program[positions[stage]].micro_batch))
                positions[stage] += 1
                progressed = True
        for b in range(len(programs) - 1):
            up, down = programs[b], programs[b + 1]
            if positions[b] < len(up) and positions[b + 1] < len(down) and up[positions[b]].boundary == b \
                    and down[positions[b + 1]].boundary == b:
                positions[b] += 1
                positions[b + 1] += 1
                progressed = True
        done = sum(p == len(prog) for p, prog in zip(positions, programs))
        assert progressed or done == len(programs), f"deadlock at {positions}"
    return trace


@pytest.mark.parametrize("stages,micro", MESHES)
def test_blocking_transfers_never_deadlock_and_respect_data_dependencies(stages, micro):
    trace = blocking_run([stage_program(stages, micro, stage) for stage in range(stages)])
    when = {step: index for index, step in enumerate(trace)}
    for stage in range(1, stages):
        for i in range(micro):
            assert when[(stage - 1, FORWARD, i)] < when[(stage, FORWARD, i)]
            assert when[(stage, BACKWARD, i)] < when[(stage - 1, BACKWARD, i)]


def test_bubble_fraction():
    assert bubble_fraction(2, 2) == pytest.approx(1 / 3)
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)


def test_layers_split_as_the_layouts_place_them():
    assert [stage_layers(5, 2, s) for s in range(2)] == [(0, 1, 2), (3, 4)]
    assert [stage_layers(4, 4, s) for s in range(4)] == [(0,), (1,), (2,), (3,)]


# ---- the real train steps of every stage in one process ------------------------------------------------------

def tiny_model(num_layers, tie):
    np.random.seed(3)
    config = LlamaConfig(seq_length=8, hidden_size=32, num_layers=num_layers, num_heads=4, n_kv_heads=2,
                         vocab_size=50, intermediate_size=64, compute_dtype="float32", softmax_compute_type="float32",
                         rotary_dtype="float32", param_init_type="float32", tie_word_embeddings=tie)
    model = LlamaForCausalLM(config)
    model.set_train(True)
    return model


def drive(cells, *inputs):
    """Run every stage's step program, summing each all-reduce over the stages of its group once all of them
    asked for it (what the collectives do across processes)."""
    programs = [cell.step_program(*inputs) for cell in cells]
    pending, results, replies = {}, [None] * len(cells), [None] * len(cells)
    active = set(range(len(cells)))
    while active:
        for stage in sorted(active):
            if stage in {s for waiting in pending.values() for s in waiting}:
                continue
            try:
                key, tensor = programs[stage].send(replies[stage])
            except StopIteration as finished:
                results[stage] = finished.value
                active.discard(stage)
                continue
            pending.setdefault(key, {})[stage] = tensor
        for key, waiting in list(pending.items()):
            members = group_members(key, len(cells))
            if set(waiting) == set(members):
                total = sum((waiting[s] for s in members[1:]), waiting[members[0]])
                for s in members:
                    replies[s] = total
                del pending[key]
    return results


def pipeline_cells(stages, micro, num_layers, tie, learning_rate):
    cells = []
    for stage in range(stages):
        settings = ParallelSettings(pipeline_stage=stages, micro_batch_num=micro)
        network = cut_to_stage(tiny_model(num_layers, tie), settings, stage)
        optimizer = nn.AdamWeightDecay(network.trainable_params(), learning_rate=learning_rate)
        cells.append(PipelineTrainOneStepCell(network, optimizer, stages, stage, micro, transport=None,
                                              use_clip_grad=True, max_grad_norm=0.5))
    return cells


def test_stages_in_one_process_follow_the_single_process_step():
    """Three stages (a middle one too), a tied embedding, more micro-batches than stages: one step's loss, norm and
    updated weights."""
    stages, micro, num_layers, tie = 3, 4, 3, True
    rng = np.random.default_rng(0)
    batches = [Tensor(rng.integers(0, 50, (micro * 2, 9)).astype(np.int32))]
    single = tiny_model(num_layers, tie)
    reference = MFTrainOneStepCell(single, nn.AdamWeightDecay(single.trainable_params(), learning_rate=1e-2),
                                   use_clip_grad=True, max_grad_norm=0.5)
    cells = pipeline_cells(stages, micro, num_layers, tie, 1e-2)
    for ids in batches:
        loss, _, _, norm = reference(ids)
        results = drive(cells, ids)
        for got_loss, overflow, _, got_norm in results:
            assert not bool(overflow.asnumpy())
            assert float(got_loss.asnumpy()) == pytest.approx(float(loss.asnumpy()), rel=1e-5)
            assert float(got_norm.asnumpy()) == pytest.approx(float(norm.asnumpy()), rel=1e-5)
    whole = {p.name: p.asnumpy() for p in single.get_parameters()}
    seen = set()
    for cell in cells:
        for param in cell.network.get_parameters():
            np.testing.assert_allclose(param.asnumpy(), whole[param.name], rtol=1e-4, atol=1e-5, err_msg=param.name)
            seen.add(param.name)
    assert seen == set(whole)


def test_a_stage_holds_only_its_parts_and_records_the_whole_model():
    settings = ParallelSettings(pipeline_stage=2, micro_batch_num=2)
    first = cut_to_stage(tiny_model(3, True), settings, 0)
    last = cut_to_stage(tiny_model(3, True), settings, 1)
    names = [{p.name for p in net.get_parameters()} for net in (first, last)]
    assert "model.tok_embeddings.embedding_weight" in names[0] & names[1]  # tied: both stages hold it
    assert not any("layers.2." in n for n in names[0]) and not any("layers.0." in n for n in names[1])
    assert "model.norm_out.weight" in names[1] - names[0]
    record = layout_record(first, settings, rank_id=0)
    assert set(record["parameters"]) == names[0] | names[1]
    assert record["parameters"]["model.tok_embeddings.embedding_weight"]["stage"] == [0, 1]
    assert record["parameters"]["model.layers.2.attention.wq.weight"]["stage"] == 1
    target = rank_layout(layout_record(last, settings, rank_id=1), "stage 1", 1)
    assert target.holds("model.tok_embeddings.embedding_weight")
    assert not target.holds("model.layers.0.attention.wq.weight")


def test_with_sequence_parallelism_the_stages_exchange_sequence_slices():
    """mp 2 with use_seq_parallel (one rank's share, no group): the first stage hands on its slice of the sequence,
    the shape the transfers carry; the numbers are the msrun resume's (tests/parallel/test_msrun_pipeline.py)."""
    settings = ParallelSettings(model_parallel=2, pipeline_stage=2, micro_batch_num=2, use_seq_parallel=True)
    split = parallelize(tiny_model(2, False), ParallelGroups(model_parallel=2, model_rank=1, sequence_parallel=True))
    first = cut_to_stage(split, settings, 0)
    ids = Tensor(np.random.default_rng(1).integers(0, 50, (2, 9)).astype(np.int32))
    out = StageForward(first, 2, 0)(Tensor(np.zeros((1,), np.float32)), ids, ids, Tensor(np.float32(1)))
    shape, _ = activation_shape(first, 2)
    assert out.shape == shape == (2, 4, 32)
