"""Multiple-choice tasks (MMLU, C-Eval, BoolQ, AGIEval): lm-eval's prompt formats read from each real file layout;
exact per-subject and category numbers from a model whose answers are known; contexts cut from the left to fit.
(test_reference_agreement.py checks the scores themselves against lm-evaluation-harness.)"""
import json
import os

import pytest

from mindformers.evaluation import agieval, boolq, ceval, mmlu, run_benchmark_task
from mindformers.evaluation.choice_scoring import encode_pair
from mindformers.evaluation.prompts import keep_last
from tests.evaluation.fakes import AnswerKeyModel
from tests.fixtures.benchmark_data import CEVAL, MMLU


def read_outputs(output_dir, task):
    with open(os.path.join(output_dir, f"eval_{task}_results.json"), encoding="utf-8") as stream:
        results = json.load(stream)
    with open(os.path.join(output_dir, f"eval_{task}_predictions.jsonl"), encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream]
    return results, records


def test_mmlu_prompt_is_five_shot_in_the_published_format(benchmark_folders):
    questions = mmlu.load_questions(benchmark_folders["mmlu"])
    physics = [q for q in questions if q.group == "high_school_physics"]
    prompt = physics[0].prompt
    assert len(prompt.shots) == 5  # the sixth dev row is not used
    assert prompt.text().startswith(
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "What is the SI unit of force?\nA. Joule\nB. Newton\nC. Watt\nD. Pascal\nAnswer: B\n\n"
        "A car moves 100 m in 20 s. What is its average speed?\nA. 2 m/s\nB. 5 m/s\nC. 20 m/s\nD. 2000 m/s\n"
        "Answer: B\n\n")
    assert prompt.text().endswith(
        "Light travels fastest in which medium?\nA. Vacuum\nB. Water\nC. Glass\nD. Diamond\nAnswer: A\n\n"
        "An object of mass 2 kg accelerates at 3 m/s^2. What net force acts on it?\nA. 6 N\nB. 1.5 N\nC. 5 N\n"
        "D. 9 N\nAnswer:")
    assert physics[0].choices == (" A", " B", " C", " D") and physics[0].answer == 0
    philosophy = [q for q in questions if q.group == "philosophy"][0].prompt.text()
    assert "\n\nWhich philosopher taught Alexander the Great?\nA. Plato" in philosophy  # the question is stripped
    basics = [q for q in questions if q.group == "python_basics"]  # no dev file: zero-shot; a quoted CSV field
    assert basics[1].prompt.text() == ("The following are multiple choice questions (with answers) about python "
                                       "basics.\n\nWhat does len(\"a,b\nc\") return?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")


def test_ceval_boolq_agieval_prompts(benchmark_folders):
    network = ceval.load_questions(benchmark_folders["ceval"])[0]
    assert network.prompt.text().startswith(
        "以下是中国关于计算机网络的单项选择题，请选出其中的正确答案。\n\n"
        "HTTP协议默认使用的端口号是\nA. 21\nB. 25\nC. 80\nD. 110\n答案： C\n\n"
        "IP地址192.168.1.1属于哪一类地址\nA. A类\nB. B类\nC. C类\nD. D类\n答案： C\n\n")
    assert network.prompt.text().endswith("\n\nTCP协议位于OSI模型的哪一层\nA. 网络层\nB. 传输层\nC. 会话层\nD. 应用层\n答案：")
    assert len(network.prompt.shots) == 5
    assert network.choices == (" A", " B", " C", " D") and network.answer == 1
    question = boolq.load_questions(benchmark_folders["boolq"])[1]
    assert question.prompt.text() == ("Tuples are immutable sequences, typically used to store collections of "
                                      "heterogeneous data.\nQuestion: can a tuple be changed after it is created?\n"
                                      "Answer:")
    assert question.choices == (" no", " yes") and question.answer == 0
    by_task = {}
    for q in agieval.load_questions(benchmark_folders["agieval"]):
        by_task.setdefault(q.group, []).append(q)
    assert set(by_task) == {"lsat-ar", "logiqa-zh", "jec-qa-kd"}  # math (cloze) is skipped
    assert by_task["lsat-ar"][1].prompt.text() == (
        "Q: If every painter is an artist and Ana is a painter, which must be true? Answer Choices: (A)Ana is not "
        "an artist (B)Ana is an artist (C)Every artist is a painter (D)No artist paints (E)Ana is a sculptor\n"
        "A: Among A through E, the answer is")
    assert by_task["lsat-ar"][1].choices[:2] == (" (A)Ana is not an artist", " (B)Ana is an artist")
    assert by_task["logiqa-zh"][0].prompt.text() == (
        "所有的金属都导电，铜是金属。问题：由此可以推出 选项：(A)铜不导电 (B)铜导电 (C)导电的都是金属 (D)铜不是金属\n"
        "答案：从A到D, 我们应选择")
    assert by_task["logiqa-zh"][0].choices == (" (A)铜不导电", " (B)铜导电", " (C)导电的都是金属", " (D)铜不是金属")
    assert by_task["jec-qa-kd"][0].answer == (0, 2)


def test_choices_split_from_the_prompt_as_lm_eval_splits_them(tokenizer):
    """Spaces ending the prompt move to the choice; prompt + choice is encoded whole and cut after the prompt."""
    context, choice = encode_pair(tokenizer, "Question: is it?\nAnswer: ", "yes")
    assert context == tokenizer.encode("Question: is it?\nAnswer:")
    assert context + choice == tokenizer.encode("Question: is it?\nAnswer: yes")


def test_mmlu_subject_and_category_numbers_from_known_answers(tokenizer, benchmark_folders, tmp_path):
    """A model that answers from a key: per subject, category and overall accuracy are exact fractions."""
    picks = {"high_school_physics": "ABB", "philosophy": "BAA", "sociology": "BCA", "nutrition": "AC",
             "python_basics": "DC"}
    answer_key = {row[0]: f"Answer: {pick}" for subject, (_, test) in MMLU.items()
                  for row, pick in zip(test, picks[subject])}
    model = AnswerKeyModel(tokenizer, answer_key)
    results = run_benchmark_task("mmlu", model, tokenizer, benchmark_folders["mmlu"], str(tmp_path), batch_size=2)
    subjects = {name: (s["correct"], s["total"]) for name, s in results["subjects"].items()}
    assert subjects == {"high_school_physics": (2, 3), "philosophy": (1, 3), "sociology": (3, 3),
                        "nutrition": (0, 2), "python_basics": (1, 2)}
    categories = {name: (c["correct"], c["total"], c["accuracy"]) for name, c in results["categories"].items()}
    # python_basics is not an MMLU subject: it counts in the overall score only.
    assert categories == {"STEM": (2, 3, 2 / 3), "humanities": (1, 3, 1 / 3), "social sciences": (3, 3, 1.0),
                          "other": (0, 2, 0.0)}
    assert (results["correct"], results["total"]) == (7, 13) and results["accuracy"] == pytest.approx(7 / 13)
    _, records = read_outputs(str(tmp_path), "mmlu")
    assert "".join(r["predicted"] for r in records) == "".join(picks[s] for s in sorted(MMLU))  # files in name order


def test_ceval_numbers_from_known_answers(tokenizer, benchmark_folders, tmp_path):
    key = {row[0]: f"答案： {pick}" for (_, val), picks in zip(CEVAL.values(), ("BBC", "AB"))
           for row, pick in zip(val, picks)}
    results = run_benchmark_task("ceval", AnswerKeyModel(tokenizer, key), tokenizer,
                                 benchmark_folders["ceval"], str(tmp_path), batch_size=4)
    assert {s: (v["correct"], v["total"]) for s, v in results["subjects"].items()} == {
        "computer_network": (2, 3), "logic": (1, 2)}
    assert {c: v["correct"] for c, v in results["categories"].items()} == {"STEM": 2, "Humanities": 1}
    assert results["acc_norm"]["correct"] == 3  # one-letter choices: acc_norm is acc


def test_keep_last_cuts_from_the_left():
    assert keep_last([1, 5, 6, 7], 4) == ([1, 5, 6, 7], False)
    assert keep_last([1, 5, 6, 7], 2) == ([6, 7], True)


def test_a_small_context_cuts_prompts_and_counts_them(tokenizer, benchmark_folders, tmp_path):
    """With seq_length 160 the 5-shot prompts lose their start, as lm-eval cuts them, and the results say how
    many did; the questions (at the end) are still asked."""
    key = {row[0]: f"Answer: {row[5]}" for _, test in MMLU.values() for row in test}
    results = run_benchmark_task("mmlu", AnswerKeyModel(tokenizer, key, seq_length=160), tokenizer,
                                 benchmark_folders["mmlu"], str(tmp_path), batch_size=4)
    questions = mmlu.load_questions(benchmark_folders["mmlu"])
    too_long = sum(len(tokenizer.encode(q.prompt.text() + " A")) > 161 for q in questions)
    assert results["prompts_truncated"] == too_long >= 3
    assert results["accuracy"] == 1.0
