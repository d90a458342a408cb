"""End to end: tiny pretrained checkpoint -> real Q&A data (alpaca_converter + llama_preprocess qa) ->
run_mindformer.py --run_mode finetune with lora_llama2_tiny.yaml -> merge.py -> lower loss on assistant tokens."""
import json
import os
import textwrap

import numpy as np
import pytest

from mindformers.checkpoint import list_checkpoints
from mindformers.pet.checkpoint import load_finetune_weights
from mindformers.tools.register import MindFormerConfig
from tests.e2e.helpers import REPO, assert_one_line_error, read_metrics, run_cli
from tests.fixtures.instruction_data import QA_SEQ_LENGTH, sharegpt_records

SIZES = dict(vocab_size=600, num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128)


def tiny_model(seq_length, pet=None):
    from mindformers import LlamaConfig, LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.pet import apply_pet  # pylint: disable=import-outside-toplevel
    model = LlamaForCausalLM(LlamaConfig(seq_length=seq_length, compute_dtype="float32", softmax_compute_type="float32",
                                         rotary_dtype="float32", **SIZES))
    return apply_pet(model, pet) if pet else model


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, wiki_mindrecord):
    """A tiny model pretrained for a few PyNative steps on the sample text (seq 32), saved as a checkpoint."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore.mindrecord import FileReader  # pylint: disable=import-outside-toplevel
    from mindformers.core.optim import AdamW  # pylint: disable=import-outside-toplevel
    from mindformers.wrapper import MFTrainOneStepCell  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.PYNATIVE_MODE)
    np.random.seed(0)
    reader = FileReader(wiki_mindrecord)
    rows = np.stack([r["input_ids"] for _, r in zip(range(64), reader.get_next())])
    reader.close()
    model = tiny_model(32)
    cell = MFTrainOneStepCell(model, AdamW(model.trainable_params(), learning_rate=5e-3), use_clip_grad=True)
    cell.set_train(True)
    for start in range(0, 64, 8):
        cell(ms.Tensor(rows[start:start + 8]))
    path = tmp_path_factory.mktemp("pretrained") / "tiny_pretrained.ckpt"
    ms.save_checkpoint(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def qa_mindrecord(tmp_path_factory, alpaca_json, sample_text_files, sp_model_file):
    from mindformers.tools.dataset_preprocess.llama import alpaca_converter, llama_preprocess  # noqa: E501 pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("qa")
    alpaca_converter.main(["--data_path", alpaca_json, "--output_path", str(folder / "conv.json")])
    (folder / "share.json").write_text(json.dumps(sharegpt_records(sample_text_files[0], limit=20)))
    output = folder / "qa.mindrecord"
    llama_preprocess.main(["--dataset_type", "qa", "--input_glob", str(folder / "*.json"), "--model_file",
                           sp_model_file, "--seq_length", str(QA_SEQ_LENGTH), "--template", "llama-2",
                           "--output_file", str(output)])
    return str(output)


def assistant_loss(model, mindrecord):
    """Mean loss over the labelled (assistant) tokens of every row."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore.mindrecord import FileReader  # pylint: disable=import-outside-toplevel
    ms.set_context(mode=ms.PYNATIVE_MODE)
    reader = FileReader(mindrecord)
    rows = [r for _, r in zip(range(10 ** 6), reader.get_next())]
    reader.close()
    ids = np.stack([r["input_ids"] for r in rows])
    labels = np.stack([r["labels"] for r in rows])
    model.set_train(True)  # training mode returns the masked loss; no dropout in these configs
    return float(model(ms.Tensor(ids), ms.Tensor(labels)).asnumpy())


def test_lora_finetune_merge_lowers_assistant_loss(tmp_path, pretrained, qa_mindrecord, sp_model_file):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers.pet.merge import main as merge  # pylint: disable=import-outside-toplevel
    config = tmp_path / "my_lora.yaml"
    sizes = "\n".join(f"    {key}: {value}" for key, value in SIZES.items())
    config.write_text(textwrap.dedent(f"""\
        base_config: ['{os.path.join(REPO, "configs", "llama2", "lora_llama2_tiny.yaml")}']
        seed: 1
        processor:
          tokenizer:
            vocab_file: '{sp_model_file}'
        runner_config:
          epochs: 3
        lr_schedule:
          learning_rate: 1.e-2
          lr_end: 1.e-3
        callbacks:
          - type: MFLossMonitor
            per_print_times: 5
          - type: CheckpointMonitor
            prefix: "tiny_lora"
            save_checkpoint_steps: 1000
          - type: CheckpointMonitor
            prefix: "adapters"
            directory: '{tmp_path / "adapters"}'
            save_checkpoint_steps: 1000
            save_trainable_params: True
        model:
          model_config:
            seq_length: {QA_SEQ_LENGTH}
    """) + sizes + "\n")
    output = tmp_path / "out"
    result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "finetune", "--load_checkpoint",
                      pretrained, "--train_dataset_dir", qa_mindrecord, "--output_dir", output])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = read_metrics(str(output))
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    trained = list_checkpoints(str(output / "checkpoint" / "rank_0"))[-1]
    # every non-LoRA weight is still the pretrained one, bit for bit
    base, after = ms.load_checkpoint(pretrained), ms.load_checkpoint(trained)
    assert any(name.endswith(".lora_b") for name in after)
    for name, value in base.items():
        assert after[name].asnumpy().tobytes() == value.asnumpy().tobytes(), name
    # merge, then the merged plain model learned the assistant replies better than the pretrained one
    merged = tmp_path / "merged.ckpt"
    merge(["--config", str(config), "--load_checkpoint", trained, "--output_path", str(merged)])
    before_model, merged_model = tiny_model(QA_SEQ_LENGTH), tiny_model(QA_SEQ_LENGTH)
    ms.load_param_into_net(before_model, base, strict_load=True)
    merged_params = ms.load_checkpoint(str(merged))
    assert sorted(merged_params) == sorted(base)
    ms.load_param_into_net(merged_model, merged_params, strict_load=True)
    before, after_loss = assistant_loss(before_model, qa_mindrecord), assistant_loss(merged_model, qa_mindrecord)
    assert after_loss < before - 0.3, (before, after_loss)
    # the adapters-only checkpoint over the pretrained weights is the same model as the merged one
    adapters = list_checkpoints(str(tmp_path / "adapters" / "rank_0"))[-1]
    assert all(".lora_" in name for name in ms.load_checkpoint(adapters) if name.startswith("model."))
    pet = dict(MindFormerConfig(str(config)).model.model_config.pet_config, adapter_checkpoint=adapters)
    lora_model = tiny_model(QA_SEQ_LENGTH, pet=pet)
    load_finetune_weights(lora_model, pretrained)
    assert assistant_loss(lora_model, qa_mindrecord) == pytest.approx(after_loss, rel=1e-5)


def test_finetune_needs_pretrained_weights(tmp_path, qa_mindrecord):
    config = os.path.join(REPO, "configs", "llama2", "finetune_llama2_tiny.yaml")
    result = run_cli(["run_mindformer.py", "--config", config, "--run_mode", "finetune", "--train_dataset_dir",
                      qa_mindrecord, "--output_dir", tmp_path])
    assert_one_line_error(result, "load_checkpoint", "run_mode finetune")
