"""BenchmarkRun: what every task shares — the model, tokenizer, batch size and token budget — and the two ways a
task asks the model, as lm-evaluation-harness does: score each choice's log-likelihood, or generate until a stop
sequence."""
import contextlib

import numpy as np

from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.choice_scoring import score_rows, scoring_rows
from mindformers.evaluation.generated_answers import generate_continuations
from mindformers.evaluation.prompts import context_budget, keep_last, model_seq_length


def progress_bar(total, desc, unit):
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    return tqdm(total=total, desc=desc, unit=unit, mininterval=0.5, dynamic_ncols=True)


@contextlib.contextmanager
def evaluation_mode(model):
    """Inference behaviour (no dropout, logits out) for the run, the model's own mode restored after."""
    set_train = getattr(model, "set_train", None)
    was_training = getattr(model, "training", False)
    if set_train is not None:
        set_train(False)
    try:
        yield
    finally:
        if set_train is not None:
            set_train(was_training)


class BenchmarkRun:
    def __init__(self, task, model, tokenizer, batch_size, max_new_tokens):
        self.task = task
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.prompts_truncated = 0

    def loglikelihoods(self, questions):
        """The log-likelihood of each choice of each ChoiceQuestion (a list per question)."""
        rows, truncated = scoring_rows(self.tokenizer, questions, model_seq_length(self.model))
        self.prompts_truncated += truncated
        with progress_bar(len(rows), self.task, "requests") as bar, evaluation_mode(self.model):
            return score_rows(self.model, rows, len(questions), self.batch_size, bar)

    def generate(self, prompts, stop_strings, decode_alone=True):
        """The greedy continuation of each FewShotPrompt, cut at the first stop sequence (the tokenizer's eos text
        is one too, as in lm-eval). decode_alone: the generated tokens are decoded by themselves (lm-eval); else
        with the prompt, its text then cut off (a leading space a sentencepiece decode would drop survives)."""
        budget = context_budget(self.model, self.max_new_tokens)
        prompt_ids = []
        for prompt in prompts:
            ids, cut = keep_last(self.tokenizer.encode(prompt.text()), budget)
            self.prompts_truncated += cut
            prompt_ids.append(ids)
        stops = tuple(stop_strings) + tuple(eos_text(self.tokenizer, stop_strings))
        with progress_bar(len(prompts), self.task, "prompts") as bar, evaluation_mode(self.model):
            return generate_continuations(self.model, self.tokenizer, prompt_ids, self.batch_size,
                                          self.max_new_tokens, stops, bar, decode_alone)

    def choice_task(self, questions, group_name, categories=None, category_of=None, normalized=False):
        """Score ChoiceQuestions; (summary, one record per question). The verdict is lm-eval's acc: the choice with
        the highest log-likelihood is one of the right ones; each record also has lm-eval's acc_norm verdict (the
        log-likelihood per character of the choice, without its leading space), which the summary reports when
        `normalized` (the tasks whose lm-eval YAML lists acc_norm)."""
        all_scores = self.loglikelihoods(questions)
        records = []
        for question, scores in zip(questions, all_scores):
            predicted = int(np.argmax(scores))
            lengths = np.array([float(len(choice[1:] if choice.startswith(" ") else choice))
                                for choice in question.choices])
            records.append({"group": question.group, "predicted": question.labels[predicted],
                            "answer": "".join(question.labels[i] for i in question.right),
                            "correct": predicted in question.right,
                            "correct_norm": int(np.argmax(np.array(scores) / lengths)) in question.right,
                            "loglikelihoods": [round(v, 6) for v in scores]})
        table = accuracy_tables(records, group_name, categories, category_of)
        if normalized:
            norm = accuracy_tables([dict(r, correct=r["correct_norm"]) for r in records], group_name)
            table["acc_norm"] = {"accuracy": norm["accuracy"], "correct": norm["correct"], "total": norm["total"]}
        return self.summary(table), records

    def summary(self, table):
        """The task's table with how it was run."""
        return dict(table, task=self.task, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                    prompts_truncated=self.prompts_truncated)


def eos_text(tokenizer, stop_strings):
    """lm-eval adds the eos token's text to every task's stop sequences."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return []
    text = tokenizer.decode([eos], skip_special_tokens=False)
    return [text] if text and text not in stop_strings else []
