"""Multiple-choice tasks (MMLU, C-Eval, BoolQ, AGIEval): each runs end to end on the tiny Llama from its real file
layout, and its batched, left-padded scoring agrees with a brute-force reference; the published prompt formats;
exact per-subject and category numbers from a model whose answers are known; shots dropped to fit the context."""
import json
import os

import numpy as np
import pytest
from mindspore import Tensor

from mindformers.evaluation import agieval, boolq, ceval, mmlu, run_benchmark_task
from mindformers.evaluation.prompts import FewShotPrompt, fit_prompt
from tests.evaluation.fakes import AnswerKeyModel
from tests.fixtures.benchmark_data import CEVAL, MMLU

LOADERS = {"mmlu": mmlu.load_questions, "ceval": ceval.load_questions, "boolq": boolq.load_questions,
           "agieval": agieval.load_questions}


def read_outputs(output_dir, task):
    with open(os.path.join(output_dir, f"eval_{task}_results.json"), encoding="utf-8") as stream:
        results = json.load(stream)
    with open(os.path.join(output_dir, f"eval_{task}_predictions.jsonl"), encoding="utf-8") as stream:
        records = [json.loads(line) for line in stream]
    return results, records


def brute_force(model, tokenizer, question):
    """The question alone: its prompt unpadded through the full forward pass; each choice's token read from the
    tokenization of prompt + choice; the argmax over those tokens' logits at the last prompt position."""
    text = question.prompt.text()
    ids = tokenizer.encode(text)
    choice_ids = []
    for choice in question.choices:
        with_choice = tokenizer.encode(text + choice)
        assert with_choice[:len(ids)] == ids, "the choice changed the prompt's tokens"
        choice_ids.append(with_choice[len(ids)])
    logits = model(Tensor(np.array([ids], np.int32))).asnumpy()[0, -1]
    scores = logits[choice_ids]
    return int(np.argmax(scores)), scores


@pytest.mark.parametrize("task", ["mmlu", "ceval", "boolq", "agieval"])
def test_batched_scoring_equals_brute_force(task, tiny_model, tokenizer, benchmark_folders, tmp_path):
    results = run_benchmark_task(task, tiny_model, tokenizer, benchmark_folders[task], str(tmp_path), batch_size=3)
    written, records = read_outputs(str(tmp_path), task)
    assert written == results
    questions = LOADERS[task](benchmark_folders[task])
    assert results["total"] == len(records) == len(questions)
    assert results["prompts_with_fewer_shots"] == 0 and results["prompts_truncated"] == 0
    correct = 0
    for question, record in zip(questions, records):
        predicted, scores = brute_force(tiny_model, tokenizer, question)
        assert record["predicted"] == question.labels[predicted], (question.prompt.query, record, scores)
        np.testing.assert_allclose(record["choice_logits"], scores, atol=1e-4)
        right = question.answer if isinstance(question.answer, tuple) else (question.answer,)
        assert record["correct"] == (right == (predicted,))
        correct += record["correct"]
    assert results["correct"] == correct and results["accuracy"] == pytest.approx(correct / len(questions))
    assert results["max_new_tokens"] == {"mmlu": 1, "ceval": 1, "boolq": 1, "agieval": 5}[task]


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
    basics = [q for q in questions if q.group == "python_basics"]  # no dev file: zero-shot; a quoted CSV field
    assert basics[1].prompt.text() == ("The following are multiple choice questions (with answers) about python "
                                       "basics.\n\nWhat does len(\"a,b\nc\") return?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:")


def test_ceval_boolq_agieval_prompts(benchmark_folders):
    network = ceval.load_questions(benchmark_folders["ceval"])[0]
    assert network.prompt.text() == (
        "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
        "HTTP协议默认使用的端口号是\nA. 21\nB. 25\nC. 80\nD. 110\n答案：C\n\n"
        "IP地址192.168.1.1属于哪一类地址\nA. A类\nB. B类\nC. C类\nD. D类\n答案：C\n\n"
        "TCP协议位于OSI模型的哪一层\nA. 网络层\nB. 传输层\nC. 会话层\nD. 应用层\n答案：")
    assert network.choices == ("A", "B", "C", "D") and network.answer == 1
    question = boolq.load_questions(benchmark_folders["boolq"])[1]
    assert question.prompt.text() == ("Tuples are immutable sequences, typically used to store collections of "
                                      "heterogeneous data.\nQuestion: can a tuple be changed after it is created?\n"
                                      "Answer:")
    assert question.choices == (" yes", " no") and question.answer == 1
    by_task = {}
    for q in agieval.load_questions(benchmark_folders["agieval"]):
        by_task.setdefault(q.group, []).append(q)
    assert set(by_task) == {"lsat-ar", "logiqa-zh", "jec-qa-kd"}  # math (cloze) is skipped
    assert by_task["lsat-ar"][1].prompt.text() == (
        "Q: If every painter is an artist and Ana is a painter, which must be true? Answer Choices: (A)Ana is not "
        "an artist (B)Ana is an artist (C)Every artist is a painter (D)No artist paints (E)Ana is a sculptor\n"
        "A: Among A through E, the answer is")
    assert by_task["lsat-ar"][1].choices == (" A", " B", " C", " D", " E")
    assert by_task["logiqa-zh"][0].prompt.text() == (
        "所有的金属都导电，铜是金属。问题：由此可以推出 选项：(A)铜不导电 (B)铜导电 (C)导电的都是金属 (D)铜不是金属\n"
        "答案：从A到D, 我们应选择")
    assert by_task["logiqa-zh"][0].choices == ("A", "B", "C", "D")
    assert by_task["jec-qa-kd"][0].answer == (0, 2)


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


def test_ceval_and_agieval_numbers_from_known_answers(tokenizer, benchmark_folders, tmp_path):
    key = {row[0]: f"答案：{pick}" for (_, val), picks in zip(CEVAL.values(), ("BBC", "AB"))
           for row, pick in zip(val, picks)}
    results = run_benchmark_task("ceval", AnswerKeyModel(tokenizer, key), tokenizer,
                                 benchmark_folders["ceval"], str(tmp_path), batch_size=4)
    assert {s: (v["correct"], v["total"]) for s, v in results["subjects"].items()} == {
        "computer_network": (2, 3), "logic": (1, 2)}
    assert {c: v["correct"] for c, v in results["categories"].items()} == {"STEM": 2, "Humanities": 1}
    # AGIEval: a question with two right letters is never right with one; English and Chinese cues.
    key = {"Which one of the following could be the order": "the answer is A",
           "If every painter is an artist": "the answer is C", "由此可以推出": "我们应选择B",
           "比赛没有取消": "我们应选择B", "民事法律行为的有效要件": "我们应选择A"}
    results = run_benchmark_task("agieval", AnswerKeyModel(tokenizer, key), tokenizer, benchmark_folders["agieval"],
                                 str(tmp_path))
    assert {t: (v["correct"], v["total"]) for t, v in results["tasks"].items()} == {
        "lsat-ar": (1, 2), "logiqa-zh": (2, 2), "jec-qa-kd": (0, 1)}


def test_shots_are_dropped_then_the_start_cut_to_fit(tokenizer):
    shots = tuple(f"Question {i}? Answer: yes\n\n" for i in range(5))
    prompt = FewShotPrompt("Is this the question we ask?\nAnswer:", header="Some questions.\n\n", shots=shots)
    full = len(tokenizer.encode(prompt.text()))
    two_shots = len(tokenizer.encode(prompt.text(2)))
    fitted = fit_prompt(tokenizer, prompt, two_shots)
    assert (fitted.shots, fitted.truncated, fitted.ids) == (2, False, tokenizer.encode(prompt.text(2)))
    assert fit_prompt(tokenizer, prompt, full).shots == 5
    bare = tokenizer.encode(prompt.text(0))
    cut = fit_prompt(tokenizer, prompt, 6)
    assert cut.truncated and cut.ids == [tokenizer.bos_token_id] + bare[-5:]  # bos, then the end with the cue


def test_a_small_context_counts_what_was_dropped(tokenizer, benchmark_folders, tmp_path):
    """With seq_length 160 the 5-shot prompts lose shots, and the results say how many did."""
    key = {row[0]: f"Answer: {row[5]}" for _, test in MMLU.values() for row in test}
    results = run_benchmark_task("mmlu", AnswerKeyModel(tokenizer, key, seq_length=160), tokenizer,
                                 benchmark_folders["mmlu"], str(tmp_path), batch_size=4)
    budget = 160 - 1  # max_new_tokens 1
    full = [len(tokenizer.encode(q.prompt.text())) for q in mmlu.load_questions(benchmark_folders["mmlu"])]
    assert results["prompts_with_fewer_shots"] == sum(n > budget for n in full) >= 3
    assert results["prompts_truncated"] == 0 and results["accuracy"] == 1.0  # the questions were still asked
