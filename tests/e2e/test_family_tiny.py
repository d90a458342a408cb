"""End to end for every family on the shared decoder, through run_mindformer.py's main (in this process: the CLI
itself is tested in test_pretrain_tiny.py and friends): the shipped tiny config pretrains on the sample text (the
loss falls), LoRA-finetunes on instruction rows, predicts and evaluates perplexity.

The configs are the family's own tiny YAMLs with the run shortened (2 layers, seq 32) and the test tokenizers:
sentencepiece families get the fixture's sentencepiece model, tokenizer.json families the byte-level BPE one (the
family tokenizers themselves are tested in tests/models)."""
import json
import os

import pytest

from tests.e2e.helpers import REPO, merge_sections, plain_paths, read_metrics, run_main
from tests.fixtures.data import leading_documents
from tests.fixtures.tokenizers import SP_VOCAB_SIZE

WIKI_SEQ, QA_SEQ = 32, 128
WIKI_CHARACTERS, EVAL_CHARACTERS, QA_RECORDS = 8000, 1500, 48
TOKENIZER_KIND = {"qwen1_5": "bpe", "aquila2": "bpe", "gemma": "sp", "internlm": "sp", "yi": "sp", "codellama": "sp",
                  "mistral": "sp", "mixtral": "sp"}
# Smaller than the shipped tiny configs (one layer: graph compilation is most of a run's cost); each family keeps its
# own choices (heads, GQA, biases, head_dim, tying, norms, activation, window).
RUN_SIZES = dict(seq_length=WIKI_SEQ, num_layers=1, hidden_size=64, intermediate_size=128, max_decode_length=16)


def packed_rows(folder, name, model_file, sample_text_files, characters):
    from mindformers.tools.dataset_preprocess.llama import llama_preprocess  # pylint: disable=import-outside-toplevel
    text = folder / f"{name}.txt"
    text.write_text("\n\n".join(leading_documents(sample_text_files, characters)) + "\n", encoding="utf-8")
    llama_preprocess.main(["--dataset_type", "wiki", "--input_glob", str(text), "--model_file", model_file,
                           "--seq_length", str(WIKI_SEQ), "--output_file", str(folder / f"{name}.mindrecord")])
    return str(folder / f"{name}.mindrecord")


def instruction_rows(folder, model_file, alpaca_json):
    from mindformers.tools.dataset_preprocess.llama import alpaca_converter, llama_preprocess  # noqa: E501 pylint: disable=import-outside-toplevel
    with open(alpaca_json, encoding="utf-8") as stream:
        (folder / "alpaca.json").write_text(json.dumps(json.load(stream)[:QA_RECORDS]), encoding="utf-8")
    alpaca_converter.main(["--data_path", str(folder / "alpaca.json"), "--output_path", str(folder / "conv.json")])
    llama_preprocess.main(["--dataset_type", "qa", "--input_glob", str(folder / "conv.json"), "--model_file",
                           model_file, "--seq_length", str(QA_SEQ), "--output_file", str(folder / "qa.mindrecord")])
    return str(folder / "qa.mindrecord")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory, sp_model_file, bpe_tokenizer_json, sample_text_files, alpaca_json):
    """kind -> the processor.tokenizer section, the ids the model config needs, the tokenizer's size, and rows made
    with it: packed text (~40 steps of batch 4), its first rows for evaluation, instruction rows (~12 steps)."""
    from mindformers.models.llama import LlamaTokenizerFast  # pylint: disable=import-outside-toplevel
    fast = LlamaTokenizerFast(tokenizer_file=bpe_tokenizer_json)
    kinds = {
        "sp": dict(tokenizer={"type": "LlamaTokenizer", "vocab_file": sp_model_file, "tokenizer_file": None,
                              "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>"},
                   ids=dict(bos_token_id=1, eos_token_id=2, pad_token_id=0), size=SP_VOCAB_SIZE, file=sp_model_file),
        "bpe": dict(tokenizer={"type": "LlamaTokenizerFast", "tokenizer_file": bpe_tokenizer_json, "vocab_file": None,
                               "unk_token": None, "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                               "pad_token": "<|reserved_special_token_0|>"},
                    ids=dict(bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                             pad_token_id=fast.convert_tokens_to_ids("<|reserved_special_token_0|>")),
                    size=len(fast), file=bpe_tokenizer_json),
    }
    for kind, values in kinds.items():
        folder = tmp_path_factory.mktemp(f"rows_{kind}")
        values["wiki"] = packed_rows(folder, "wiki", values["file"], sample_text_files, WIKI_CHARACTERS)
        values["held"] = packed_rows(folder, "held", values["file"], sample_text_files, EVAL_CHARACTERS)
        values["qa"] = instruction_rows(folder, values["file"], alpaca_json)
    return kinds


def user_config(path, shipped, tokenizer, ids, **sections):
    """A user's YAML over a shipped family config: the shorter run, the test tokenizer and its ids."""
    import yaml  # pylint: disable=import-outside-toplevel
    config = {"base_config": [os.path.join(REPO, "configs", shipped)], "processor": {"tokenizer": tokenizer},
              "model": {"model_config": dict(RUN_SIZES, **ids)}}
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(plain_paths(merge_sections(config, sections)), stream, sort_keys=False)
    return str(path)


def run(capsys, *argv):
    code, out, err = run_main(list(argv), capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    return out


@pytest.mark.parametrize("family", sorted(TOKENIZER_KIND))
def test_tiny_family_pretrains_finetunes_predicts_and_evaluates(family, tokenizers, tmp_path, capsys):
    kind = tokenizers[TOKENIZER_KIND[family]]
    tokenizer, ids = kind["tokenizer"], kind["ids"]
    pretrain = user_config(tmp_path / "pretrain.yaml", f"{family}/pretrain_{family}_tiny.yaml", tokenizer, ids,
                           runner_config={"epochs": 1, "batch_size": 4}, seed=1,
                           lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2})
    run(capsys, "--config", pretrain, "--train_dataset_dir", kind["wiki"], "--output_dir", tmp_path / "pretrain")
    losses = [m["loss"] for m in read_metrics(str(tmp_path / "pretrain"))]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    pretrained = tmp_path / "pretrain" / "checkpoint"

    lora = user_config(tmp_path / "lora.yaml", f"{family}/lora_{family}_tiny.yaml", tokenizer, ids,
                       runner_config={"epochs": 3, "batch_size": 4}, model={"model_config": {"seq_length": QA_SEQ}},
                       lr_schedule={"learning_rate": 2.e-2, "warmup_steps": 1})
    run(capsys, "--config", lora, "--load_checkpoint", pretrained, "--train_dataset_dir", kind["qa"],
        "--output_dir", tmp_path / "lora")
    epochs = [[m["loss"] for m in read_metrics(str(tmp_path / "lora")) if m["epoch"] == e] for e in (1, 3)]
    assert sum(epochs[1]) / len(epochs[1]) < sum(epochs[0]) / len(epochs[0]) - 0.03, epochs  # the same rows, learned

    # Predict and evaluate run a few forwards each: op by op is cheaper than compiling their graphs.
    pynative = {"context": {"mode": 1}}
    predict = user_config(tmp_path / "predict.yaml", f"{family}/predict_{family}_tiny.yaml", tokenizer, ids,
                          **pynative)
    run(capsys, "--config", predict, "--load_checkpoint", pretrained, "--predict_data", "The for statement",
        "--max_new_tokens", "4", "--output_dir", tmp_path / "predict")
    with open(tmp_path / "predict" / "predict_results.jsonl", encoding="utf-8") as stream:
        (record,) = [json.loads(line) for line in stream]
    assert record["output"] and 1 <= len(record["output_ids"]) <= 4

    evaluate = user_config(tmp_path / "eval.yaml", f"{family}/pretrain_{family}_tiny.yaml", tokenizer, ids, **pynative)
    run(capsys, "--config", evaluate, "--run_mode", "eval", "--eval_dataset_dir", kind["held"], "--load_checkpoint",
        pretrained, "--output_dir", tmp_path / "eval")
    with open(tmp_path / "eval" / "eval_results.json", encoding="utf-8") as stream:
        perplexity = json.load(stream)["PerplexityMetric"]["PPL"]
    assert 1.0 < perplexity < kind["size"] / 2, perplexity  # guessing uniformly would score the tokenizer's size
