"""Generation tasks (GSM8K, BBH, HumanEval): end to end on the tiny Llama from their real file layouts (batched
outputs equal each prompt generated alone), prompts as published, and answer extraction and scoring on crafted
answers from a scripted model."""
import json
import os

import pytest

from mindformers.evaluation import bbh, gsm8k, human_eval, run_benchmark_task
from mindformers.evaluation.generated_answers import cut_at_stop
from mindformers.evaluation.numeric_answers import extract_number, same_number
from mindformers.evaluation.prompts import context_budget, fit_prompt
from mindformers.trainer.predict import continuation
from tests.evaluation.fakes import ScriptedGenerator
from tests.fixtures.benchmark_data import BBH, GSM8K, HUMAN_EVAL, write_jsonl

NEW_TOKENS = 3  # enough to exercise batching and decoding; the tiny random model writes noise anyway


def predictions(output_dir, task):
    with open(os.path.join(output_dir, f"eval_{task}_predictions.jsonl"), encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def test_bbh_batched_generation_equals_one_prompt_at_a_time(tiny_model, tokenizer, benchmark_folders, tmp_path):
    results = run_benchmark_task("bbh", tiny_model, tokenizer, benchmark_folders["bbh"], str(tmp_path), batch_size=2,
                                 max_new_tokens=NEW_TOKENS)
    records = predictions(str(tmp_path), "bbh")
    assert results["total"] == len(records) == 5 and results["max_new_tokens"] == NEW_TOKENS
    assert {task: t["total"] for task, t in results["tasks"].items()} == {"boolean_expressions": 3, "word_sorting": 2}
    prompts = [bbh.task_prompt(bbh.read_prefix(os.path.dirname(benchmark_folders["bbh"]), task), example["input"])
               for task, examples in sorted(BBH.items()) for example in examples]
    budget = context_budget(tiny_model, NEW_TOKENS)
    for prompt, record in zip(prompts, records):
        ids = fit_prompt(tokenizer, prompt, budget).ids
        alone = tiny_model.generate([ids], max_new_tokens=NEW_TOKENS, do_sample=False,
                                    stop_strings=list(bbh.STOP_STRINGS), tokenizer=tokenizer)[0]
        assert record["output"] == cut_at_stop(continuation(tokenizer, ids, alone), bbh.STOP_STRINGS)
        assert record["correct"] == (bbh.extract_answer(record["output"]) == record["answer"])


@pytest.mark.parametrize("task", ["gsm8k", "human_eval"])
def test_runs_end_to_end_on_the_tiny_model(task, tiny_model, tokenizer, benchmark_folders, tmp_path):
    results = run_benchmark_task(task, tiny_model, tokenizer, benchmark_folders[task], str(tmp_path), batch_size=2,
                                 max_new_tokens=NEW_TOKENS)
    records = predictions(str(tmp_path), task)
    assert results["total"] == len(records) == 3
    assert results["correct"] == sum(r["correct"] for r in records)
    if task == "gsm8k":  # 8 shots do not fit in 509 tokens with this tokenizer: some are dropped, and counted
        assert results["prompts_with_fewer_shots"] == 3 and results["prompts_truncated"] == 0
        assert [r["answer"] for r in records] == [105.0, 36.0, 48.0]
    else:
        assert [r["task_id"] for r in records] == [p["task_id"] for p in HUMAN_EVAL]
        assert all(r["status"] in ("passed", "failed", "timed out") for r in records)
        assert results["pass@1"] == results["accuracy"]


def test_gsm8k_prompt_and_scoring(tokenizer, benchmark_folders, tmp_path):
    script = {GSM8K[0]["question"]: " It buys 35, so 155, and lends 50. The answer is 105.\n\nQ: more",
              GSM8K[1]["question"]: " 12 * 3 = 36. The answer is $36.00.",
              GSM8K[2]["question"]: " 1200 / 25 = 48, but the answer is 50 bags. Or 48."}
    model = ScriptedGenerator(tokenizer, script, seq_length=4096)
    results = run_benchmark_task("gsm8k", model, tokenizer, benchmark_folders["gsm8k"], str(tmp_path), batch_size=2)
    records = predictions(str(tmp_path), "gsm8k")
    assert [r["predicted"] for r in records] == [105.0, 36.0, 50.0]
    assert [r["correct"] for r in records] == [True, True, False] and results["accuracy"] == pytest.approx(2 / 3)
    assert records[0]["output"] == " It buys 35, so 155, and lends 50. The answer is 105."  # cut at the blank line
    assert model.calls[0]["max_new_tokens"] == 200 and model.calls[0]["do_sample"] is False
    assert model.calls[0]["stop_strings"] == list(gsm8k.STOP_STRINGS)
    prompt = gsm8k.FewShotPrompt(f"Q: {GSM8K[1]['question']}\nA:", shots=gsm8k.SHOTS).text()
    assert prompt.count("\n\nQ: ") == 8 and prompt.endswith("\n\nQ: Pens cost $3 each. How much do 12 pens cost?\nA:")
    assert prompt.startswith("Q: A baker makes 24 muffins") and "The answer is 32.5.\n\n" in prompt


@pytest.mark.parametrize("text,number", [
    ("So 3 + 4 = 7. The answer is 7.", 7.0),
    ("The answer is $1,234.50 in total.", 1234.5),
    ("First 12, then 30. The answer is: -5 degrees", -5.0),
    ("She has 10 apples and eats 3, leaving 7", 7.0),           # no marker: the last number
    ("The answer is 8. Wait, the answer is 9", 9.0),             # the last marker wins
    ("the answer is unknown, maybe 4", 4.0),                     # a marker without a number: the last number
    ("No digits here.", None),
])
def test_gsm8k_answer_extraction(text, number):
    assert extract_number(text) == number


def test_gsm8k_numbers_compare_by_value():
    assert same_number(36.0, 36) and same_number(0.1 + 0.2, 0.3) and not same_number(None, 3)
    assert not same_number(48.5, 48)
    assert gsm8k.gold_number({"answer": "... 1,000 + 200\n#### 1,200"}, "f", 1) == 1200.0


def test_bbh_prompts_and_scoring(tokenizer, benchmark_folders, tmp_path):
    examples = BBH["boolean_expressions"] + BBH["word_sorting"]
    answers = [" not ( True ) is False, and False and True is False. So the answer is False.",
               " True or False is True. So the answer is False.",
               " True\n\nQ: never read",
               " apple fig pear",
               " dict tuple list"]
    model = ScriptedGenerator(tokenizer, {e["input"]: a for e, a in zip(examples, answers)}, seq_length=4096)
    results = run_benchmark_task("bbh", model, tokenizer, benchmark_folders["bbh"], str(tmp_path), batch_size=2)
    assert {t: (v["correct"], v["total"]) for t, v in results["tasks"].items()} == {
        "boolean_expressions": (2, 3), "word_sorting": (1, 2)}
    assert (results["correct"], results["total"]) == (3, 5) and model.calls[0]["max_new_tokens"] == 32
    folder = os.path.dirname(benchmark_folders["bbh"])
    cot = bbh.task_prompt(bbh.read_prefix(folder, "boolean_expressions"), examples[0]["input"]).text()
    assert cot == ("Evaluate the result of a random Boolean expression.\n\nQ: not ( False ) or False is\nA: Let's "
                   "think step by step.\nnot ( False ) is True, and True or False is True. So the answer is True.\n\n"
                   "Q: not ( True ) and ( True ) is\nA: Let's think step by step.")  # no canary header
    plain = bbh.task_prompt(bbh.read_prefix(folder, "word_sorting"), examples[3]["input"]).text()
    assert plain == "Q: Sort the following words alphabetically: List: pear apple fig\nA:"


@pytest.mark.parametrize("text,answer", [
    (" Let's see. So the answer is (B).", "(B)"),
    (" So the answer is: valid.\nMore text", "valid"),
    (" apple banana cherry\nQ: next", "apple banana cherry"),
    (" The answer is No. Then the answer is Yes.", "Yes"),
    ("", ""),
])
def test_bbh_answer_extraction(text, answer):
    assert bbh.extract_answer(text) == answer


def test_human_eval_completions_run_in_the_sandbox(tokenizer, benchmark_folders, tmp_path):
    outside = tmp_path / "outside.txt"
    script = {HUMAN_EVAL[0]["prompt"]: "    return a + b\n\ndef helper():\n    raise ValueError\n",  # cut at def
              HUMAN_EVAL[1]["prompt"]: "    return text\n",
              HUMAN_EVAL[2]["prompt"]: f"    open({str(outside)!r}, 'w').write('x')\n    return n % 2 == 0\n"}
    model = ScriptedGenerator(tokenizer, script, seq_length=4096)
    results = run_benchmark_task("human_eval", model, tokenizer, benchmark_folders["human_eval"], str(tmp_path))
    records = predictions(str(tmp_path), "human_eval")
    assert [r["status"] for r in records] == ["passed", "failed", "failed"]
    assert records[0]["completion"] == "    return a + b\n"
    assert "sandbox: open refused" in records[2]["detail"] and not outside.exists()
    assert results["pass@1"] == pytest.approx(1 / 3)
    assert model.calls[0]["stop_strings"] == list(human_eval.STOP_STRINGS)
    assert model.calls[0]["max_new_tokens"] == 200


def test_human_eval_reads_a_plain_jsonl_file(tokenizer, tmp_path):
    path = tmp_path / "HumanEval.jsonl"
    write_jsonl(str(path), HUMAN_EVAL[:1])
    model = ScriptedGenerator(tokenizer, {HUMAN_EVAL[0]["prompt"]: HUMAN_EVAL[0]["canonical_solution"]})
    assert run_benchmark_task("human_eval", model, tokenizer, str(path), str(tmp_path / "out"))["pass@1"] == 1.0
