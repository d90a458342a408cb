"""End to end for every family on the shared decoder, through run_mindformer.py's main (in this process: the CLI
itself is tested in test_pretrain_tiny.py and friends): the shipped tiny config pretrains on the sample text (the
loss falls), LoRA-finetunes on instruction rows, predicts and evaluates perplexity.

Each family runs its own tiny YAML, tokenizer section included, over the family's tokenizer folder from
tests/fixtures/family_tokenizers.py (a small tokenizer trained with the family's settings, saved as its HF release
lays it out); only the run is shortened (one layer, seq 32) and the token ids the model config names are the
folder's, as the small vocabularies number them differently from the releases."""
import json
import os

import pytest

from tests.e2e.helpers import REPO, merge_sections, plain_paths, read_metrics, run_main
from tests.fixtures.data import leading_documents

WIKI_SEQ, QA_SEQ = 32, 128
WIKI_CHARACTERS, EVAL_CHARACTERS, QA_RECORDS = 8000, 1500, 48
# config family -> its tokenizer folder in tests/fixtures/family_tokenizers.py (Mistral's and Mixtral's are Llama 2's,
# GPT-3's GPT-2's)
TOKENIZER_FOLDER = {"qwen1_5": "qwen2", "gemma": "gemma", "internlm": "internlm", "yi": "yi",
                    "codellama": "codellama", "aquila2": "aquila2", "mistral": "llama2", "mixtral": "llama2",
                    "bloom": "bloom", "gpt3": "gpt2", "baichuan2": "baichuan2", "glm3": "chatglm3"}
# instruction rows in the family's own chat format where its users fine-tune in it (fschat's vicuna by default):
# ChatGLM3's [gMASK]sop<|user|> ... <|assistant|> from its folder's chat_template
QA_TEMPLATE = {"glm3": "tokenizer"}
# Smaller than the shipped tiny configs (one layer: graph compilation is most of a run's cost); each family keeps its
# own choices (heads, GQA, biases, head_dim, tying, norms, activation, window).
RUN_SIZES = dict(seq_length=WIKI_SEQ, num_layers=1, hidden_size=64, intermediate_size=128, max_decode_length=16)


def preprocess(folder, name, tokenizer, *flags):
    from mindformers.tools.dataset_preprocess.llama import llama_preprocess  # pylint: disable=import-outside-toplevel
    output = os.path.join(folder, f"{name}.mindrecord")
    llama_preprocess.main(list(flags) + ["--model_file", tokenizer, "--output_file", output])
    return output


@pytest.fixture(scope="module")
def family_data(tmp_path_factory, family_folders, sample_text_files, alpaca_json):
    """family -> its tokenizer folder, the ids and size of that tokenizer, and rows made with it: packed text (~40
    steps of batch 4), its first rows for evaluation, and instruction rows (~12 steps). Built on first use."""
    from mindformers.tools.dataset_preprocess.llama import alpaca_converter  # noqa: E501 pylint: disable=import-outside-toplevel
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    from mindformers.trainer.causal_language_modeling import build_tokenizer  # noqa: E501 pylint: disable=import-outside-toplevel
    built = {}

    def get(family):
        if family not in built:
            tokenizer = family_folders(TOKENIZER_FOLDER[family]).folder
            shipped = MindFormerConfig(os.path.join(REPO, "configs", family, f"pretrain_{family}_tiny.yaml"))
            shipped.merge_from_dict({"processor.tokenizer.vocab_file": tokenizer})
            loaded = build_tokenizer(shipped)  # the run's tokenizer: the YAML's section over the folder
            folder = tmp_path_factory.mktemp(f"rows_{family}")
            texts = {}
            for name, characters in (("wiki", WIKI_CHARACTERS), ("held", EVAL_CHARACTERS)):
                texts[name] = folder / f"{name}.txt"
                texts[name].write_text("\n\n".join(leading_documents(sample_text_files, characters)) + "\n",
                                       encoding="utf-8")
            with open(alpaca_json, encoding="utf-8") as stream:
                (folder / "alpaca.json").write_text(json.dumps(json.load(stream)[:QA_RECORDS]), encoding="utf-8")
            alpaca_converter.main(["--data_path", str(folder / "alpaca.json"), "--output_path",
                                   str(folder / "conv.json")])
            wiki = ["--dataset_type", "wiki", "--seq_length", str(WIKI_SEQ)]
            eos = loaded.eos_token_id
            built[family] = dict(
                tokenizer=tokenizer, size=len(loaded),
                ids=dict(bos_token_id=loaded.bos_token_id if loaded.bos_token_id is not None else eos,
                         eos_token_id=eos, pad_token_id=loaded.pad_token_id if loaded.pad_token_id is not None else eos),
                wiki=preprocess(folder, "wiki", tokenizer, *wiki, "--input_glob", str(texts["wiki"])),
                held=preprocess(folder, "held", tokenizer, *wiki, "--input_glob", str(texts["held"])),
                qa=preprocess(folder, "qa", tokenizer, "--dataset_type", "qa", "--seq_length", str(QA_SEQ),
                              "--template", QA_TEMPLATE.get(family, "vicuna_v1.1"),
                              "--input_glob", str(folder / "conv.json")))
        return built[family]
    return get


def user_config(path, shipped, tokenizer, ids, **sections):
    """A user's YAML over a shipped family config: the shorter run, the tokenizer folder (as --vocab_file gives it)
    and its ids."""
    import yaml  # pylint: disable=import-outside-toplevel
    config = {"base_config": [os.path.join(REPO, "configs", shipped)],
              "processor": {"tokenizer": {"vocab_file": tokenizer}},
              "model": {"model_config": dict(RUN_SIZES, **ids)}}
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(plain_paths(merge_sections(config, sections)), stream, sort_keys=False)
    return str(path)


def run(capsys, *argv):
    code, out, err = run_main(list(argv), capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    return out


@pytest.mark.parametrize("family", sorted(TOKENIZER_FOLDER))
def test_tiny_family_pretrains_finetunes_predicts_and_evaluates(family, family_data, tmp_path, capsys):
    kind = family_data(family)
    tokenizer, ids = kind["tokenizer"], kind["ids"]
    pretrain = user_config(tmp_path / "pretrain.yaml", f"{family}/pretrain_{family}_tiny.yaml", tokenizer, ids,
                           runner_config={"epochs": 1, "batch_size": 4}, seed=1,
                           lr_schedule={"learning_rate": 5.e-3, "warmup_steps": 2})
    run(capsys, "--config", pretrain, "--train_dataset_dir", kind["wiki"], "--output_dir", tmp_path / "pretrain")
    losses = [m["loss"] for m in read_metrics(str(tmp_path / "pretrain"))]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    pretrained = tmp_path / "pretrain" / "checkpoint"

    lora = user_config(tmp_path / "lora.yaml", f"{family}/lora_{family}_tiny.yaml", tokenizer, ids,
                       runner_config={"epochs": 4, "batch_size": 4}, model={"model_config": {"seq_length": QA_SEQ}},
                       lr_schedule={"learning_rate": 5.e-2, "lr_end": 5.e-3, "warmup_steps": 1})
    run(capsys, "--config", lora, "--load_checkpoint", pretrained, "--train_dataset_dir", kind["qa"],
        "--output_dir", tmp_path / "lora")
    epochs = [[m["loss"] for m in read_metrics(str(tmp_path / "lora")) if m["epoch"] == e] for e in (1, 4)]
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
