"""Generation tasks (GSM8K, BBH, HumanEval): end to end on the tiny Llama from their real file layouts (batched
outputs equal each prompt generated alone), lm-eval's prompts, and answer extraction and scoring on crafted
answers from a scripted model. (test_reference_agreement.py runs lm-evaluation-harness itself.)"""
import json
import os

import pytest

from mindformers.evaluation import bbh, gsm8k, human_eval, run_benchmark_task
from mindformers.evaluation.generated_answers import cut_at_stop
from mindformers.evaluation.prompts import context_budget, keep_last
from tests.evaluation.fakes import ScriptedGenerator
from tests.fixtures.benchmark_data import BBH, GSM8K, GSM8K_TRAIN, HUMAN_EVAL, write_jsonl

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
    budget = context_budget(tiny_model, NEW_TOKENS)
    eos = tokenizer.decode([tokenizer.eos_token_id], skip_special_tokens=False)
    for (_, prompt, _), record in zip(bbh.load_questions(benchmark_folders["bbh"]), records):
        ids, _ = keep_last(tokenizer.encode(prompt.text()), budget)
        alone = tiny_model.generate([ids], max_new_tokens=NEW_TOKENS, do_sample=False,
                                    stop_strings=list(bbh.STOP_STRINGS) + [eos], tokenizer=tokenizer)[0]
        text = tokenizer.decode(alone[len(ids):], skip_special_tokens=True)  # decoded alone, as lm-eval does
        assert record["output"] == cut_at_stop(text, bbh.STOP_STRINGS)
        assert record["correct"] == (bbh.extract_answer(record["output"]) == record["answer"])


@pytest.mark.parametrize("task", ["gsm8k", "human_eval"])
def test_runs_end_to_end_on_the_tiny_model(task, tiny_model, tokenizer, benchmark_folders, tmp_path):
    results = run_benchmark_task(task, tiny_model, tokenizer, benchmark_folders[task], str(tmp_path), batch_size=2,
                                 max_new_tokens=NEW_TOKENS)
    records = predictions(str(tmp_path), task)
    assert results["total"] == len(records) == 3
    assert results["correct"] == sum(r["correct"] for r in records)
    if task == "gsm8k":
        assert [r["answer"] for r in records] == ["105", "36", "48"]
        assert results["flexible_extract"]["total"] == 3
    else:
        assert [r["task_id"] for r in records] == [p["task_id"] for p in HUMAN_EVAL]
        assert all(r["status"] in ("passed", "failed", "timed out") for r in records)
        assert results["pass@1"] == results["accuracy"]


def test_gsm8k_prompt_and_scoring(tokenizer, benchmark_folders, tmp_path):
    script = {GSM8K[0]["question"]: " 120 + 35 = 155, minus 50.\n#### 105\n\nQuestion: more",
              GSM8K[1]["question"]: " 12 * 3 = 36 dollars, so $36.",
              GSM8K[2]["question"]: " 1200 / 25 = 48.\n#### 1,200 / 25 = 50"}
    model = ScriptedGenerator(tokenizer, script, seq_length=4096)
    results = run_benchmark_task("gsm8k", model, tokenizer, benchmark_folders["gsm8k"], str(tmp_path), batch_size=2)
    records = predictions(str(tmp_path), "gsm8k")
    # strict-match: the number after "#### "; flexible-extract: the last number-like run
    assert [r["predicted"] for r in records] == ["105", "[invalid]", "1,200"]
    assert [r["predicted_flexible"] for r in records] == ["105", "$36.", "50"]
    assert [r["correct"] for r in records] == [True, False, False] and results["accuracy"] == pytest.approx(1 / 3)
    assert [r["correct_flexible"] for r in records] == [True, True, False]
    assert results["flexible_extract"]["correct"] == 2
    assert records[0]["output"] == "120 + 35 = 155, minus 50.\n#### 105\n\n"  # cut at "Question:", decoded alone
    assert model.calls[0]["max_new_tokens"] == 256 and model.calls[0]["do_sample"] is False
    assert model.calls[0]["stop_strings"] == list(gsm8k.STOP_STRINGS)  # "</s>" already is the eos text
    prompt = gsm8k.load_questions(benchmark_folders["gsm8k"])[1][1].text()
    assert prompt.count("Question: ") == 6 and prompt.endswith(
        "\n\nQuestion: Pens cost $3 each. How much do 12 pens cost?\nAnswer:")
    train = {row["question"]: row["answer"] for row in GSM8K_TRAIN}
    for shot in prompt.split("\n\n")[:5]:  # five train examples with their full worked answers
        question, answer = shot[len("Question: "):].split("\nAnswer: ", 1)
        assert train[question] == answer


def test_gsm8k_shots_are_lm_evals_seeded_draws(benchmark_folders):
    """One random.Random(1234) draws five train rows per question, in question order."""
    import random  # pylint: disable=import-outside-toplevel
    draw = random.Random(1234)
    for _, prompt, _ in gsm8k.load_questions(benchmark_folders["gsm8k"]):
        expected = draw.sample(GSM8K_TRAIN, 5)
        assert prompt.shots == tuple(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in expected)


@pytest.mark.parametrize("text,strict,flexible", [
    ("So 3 + 4 = 7.\n#### 7", "7", "7"),
    ("#### 1,234.50 dollars", "1,234.50", "1,234.50"),
    ("First 12, then -30", "[invalid]", "-30"),
    ("#### 8 then #### 9", "8", "9"),
    ("No digits here.", "[invalid]", "[invalid]"),
])
def test_gsm8k_answer_extraction(text, strict, flexible):
    assert gsm8k.extract(gsm8k.STRICT, text) == strict
    assert gsm8k.extract(gsm8k.FLEXIBLE, text, last=True) == flexible


def test_gsm8k_answers_compare_as_lm_evals_exact_match():
    assert gsm8k.normalized("The total is... #### 1,200") == "1200"
    assert gsm8k.normalized("$36.") == "36" and gsm8k.normalized("48.5") == "48.5"


def test_bbh_prompts_and_scoring(tokenizer, benchmark_folders, tmp_path):
    examples = BBH["boolean_expressions"] + BBH["word_sorting"]
    answers = ["not ( True ) is False, and False and True is False. So the answer is False.",
               "True or False is True. So the answer is False.",
               "So the answer is True.\n\nQ: never read",
               "So the answer is apple fig pear.",
               "The answer is dict list tuple."]
    model = ScriptedGenerator(tokenizer, {e["input"]: a for e, a in zip(examples, answers)}, seq_length=4096)
    results = run_benchmark_task("bbh", model, tokenizer, benchmark_folders["bbh"], str(tmp_path), batch_size=2)
    assert {t: (v["correct"], v["total"]) for t, v in results["tasks"].items()} == {
        "boolean_expressions": (2, 3), "word_sorting": (1, 2)}
    assert (results["correct"], results["total"]) == (3, 5) and model.calls[0]["max_new_tokens"] == 1024
    assert model.calls[0]["stop_strings"] == list(bbh.STOP_STRINGS)
    cot = bbh.load_questions(benchmark_folders["bbh"])[0][1].text()
    assert cot == ("Evaluate the result of a random Boolean expression.\n\nQ: not ( False ) or False is\nA: Let's "
                   "think step by step.\nnot ( False ) is True, and True or False is True. So the answer is True.\n\n"
                   "Q: True and not True is\nA: Let's think step by step.\nnot True is False, and True and False is "
                   "False. So the answer is False.\n\nQ: not not False is\nA: Let's think step by step.\nnot not False "
                   "is not True, which is False. So the answer is False.\n\n"
                   "Q: not ( True ) and ( True ) is\nA: Let's think step by step.\n")  # no canary header


@pytest.mark.parametrize("text,answer", [
    ("Let's see. So the answer is (B).", "(B)"),
    ("So the answer is False.\nMore text", "False"),
    ("the answer is No. Then the answer is Yes.", "No. Then the answer is Yes"),  # the first match, greedy
    ("The answer is Yes.", "[invalid]"),  # the pattern is lower case
    ("So the answer is: valid.", "[invalid]"),  # "is" must be followed by a space
    ("", "[invalid]"),
])
def test_bbh_answer_extraction(text, answer):
    assert bbh.extract_answer(text) == answer


def test_human_eval_completions_run_in_the_sandbox(tokenizer, benchmark_folders, tmp_path):
    outside = tmp_path / "outside.txt"
    script = {HUMAN_EVAL[0]["prompt"]: "    return a + b\n\ndef helper():\n    raise ValueError\n",  # cut at def
              # a right body, then a top-level comment and a failing assert: the "\n#" stop cuts them off
              HUMAN_EVAL[1]["prompt"]: "    return ' '.join(reversed(text.split()))\n# Test\nassert False\n",
              HUMAN_EVAL[2]["prompt"]: f"    open({str(outside)!r}, 'w').write('x')\n    return n % 2 == 0\n"}
    model = ScriptedGenerator(tokenizer, script, seq_length=4096)
    results = run_benchmark_task("human_eval", model, tokenizer, benchmark_folders["human_eval"], str(tmp_path))
    records = predictions(str(tmp_path), "human_eval")
    assert [r["status"] for r in records] == ["passed", "passed", "failed"]
    assert records[0]["completion"] == "    return a + b\n"
    assert records[1]["completion"] == "    return ' '.join(reversed(text.split()))"
    assert "sandbox: open refused" in records[2]["detail"] and not outside.exists()
    assert results["pass@1"] == pytest.approx(2 / 3)
    assert model.calls[0]["stop_strings"] == list(human_eval.STOP_STRINGS) + ["</s>"]  # and the eos text
    assert human_eval.STOP_STRINGS == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    assert model.calls[0]["max_new_tokens"] == 1024


def test_human_eval_reads_a_plain_jsonl_file(tokenizer, tmp_path):
    path = tmp_path / "HumanEval.jsonl"
    write_jsonl(str(path), HUMAN_EVAL[:1])
    model = ScriptedGenerator(tokenizer, {HUMAN_EVAL[0]["prompt"]: HUMAN_EVAL[0]["canonical_solution"]})
    assert run_benchmark_task("human_eval", model, tokenizer, str(path), str(tmp_path / "out"))["pass@1"] == 1.0
