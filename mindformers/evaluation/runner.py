"""BenchmarkRun: what every task shares — the model, tokenizer, batch size and token budget — and the two ways a
task asks the model: pick one of several choices, or generate an answer."""
import contextlib

from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.choice_scoring import answer_cue, choice_token_ids, score_questions
from mindformers.evaluation.generated_answers import generate_continuations
from mindformers.evaluation.prompts import context_budget, fit_prompt


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
        self.budget = context_budget(model, max_new_tokens)
        self.prompts_with_fewer_shots = 0
        self.prompts_truncated = 0
        self._choice_tokens = {}

    def fit(self, prompts):
        """Token ids of each prompt within the budget (shots dropped first, then the start cut), counted."""
        ids = []
        for prompt in prompts:
            fitted = fit_prompt(self.tokenizer, prompt, self.budget)
            self.prompts_with_fewer_shots += fitted.shots < len(prompt.shots)
            self.prompts_truncated += fitted.truncated
            ids.append(fitted.ids)
        return ids

    def choose(self, questions):
        """The ChoiceOutcome of each ChoiceQuestion."""
        choice_ids = [choice_token_ids(self.tokenizer, answer_cue(q.prompt.query), q.choices, self._choice_tokens)
                      for q in questions]
        prompt_ids = self.fit([q.prompt for q in questions])
        with progress_bar(len(questions), self.task, "questions") as bar, evaluation_mode(self.model):
            return score_questions(self.model, prompt_ids, choice_ids, self.batch_size, bar)

    def generate(self, prompts, stop_strings):
        """The greedy continuation of each FewShotPrompt, cut at the first stop string."""
        prompt_ids = self.fit(prompts)
        with progress_bar(len(prompts), self.task, "prompts") as bar, evaluation_mode(self.model):
            return generate_continuations(self.model, self.tokenizer, prompt_ids, self.batch_size,
                                          self.max_new_tokens, stop_strings, bar)

    def choice_task(self, questions, group_name, categories=None, category_of=None):
        """Score ChoiceQuestions; (summary, one record per question)."""
        outcomes = self.choose(questions)
        records = []
        for question, outcome in zip(questions, outcomes):
            right = question.answer if isinstance(question.answer, tuple) else (question.answer,)
            records.append({"group": question.group, "predicted": question.labels[outcome.predicted],
                            "answer": "".join(question.labels[i] for i in right),
                            "correct": right == (outcome.predicted,),
                            "choice_logits": [round(v, 6) for v in outcome.choice_logits]})
        return self.summary(accuracy_tables(records, group_name, categories, category_of)), records

    def summary(self, table):
        """The task's table with how it was run."""
        return dict(table, task=self.task, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                    prompts_with_fewer_shots=self.prompts_with_fewer_shots, prompts_truncated=self.prompts_truncated)
