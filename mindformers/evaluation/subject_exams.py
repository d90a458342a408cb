"""What MMLU and C-Eval share: one CSV of four-way questions per subject in a split folder, the first five rows of
the subject's dev file as shots, a description naming the subject, and "question / A. .. D. / cue" prompts whose
choices are " A" .. " D", laid out as lm-evaluation-harness's mmlu and ceval-valid tasks lay them out (with
--num_fewshot 5, the published setting)."""
import dataclasses
import logging
import os

from mindformers.evaluation.choice_scoring import ChoiceQuestion
from mindformers.evaluation.data_files import files_in, layout_error, read_csv_records, read_csv_rows
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.tools.errors import DataError

logger = logging.getLogger("mindformers")

LETTERS = ("A", "B", "C", "D")
COLUMNS = ("question",) + LETTERS + ("answer",)
SHOTS = 5


@dataclasses.dataclass(frozen=True)
class SubjectExam:
    task: str              # name in messages ("MMLU")
    split: str             # the scored split: files <subject>_<split>.csv in a folder named <split>
    layout: str            # the expected layout, for the error when it is not found
    has_header_row: bool   # C-Eval's CSVs name their columns (id,question,A,B,C,D,answer,...); MMLU's do not
    header: str            # the text before the shots, with {subject} for the subject's name
    subject_names: dict    # subject -> its name in the header (else the file's subject with spaces for '_')
    cue: str               # what ends a question, before the answer letter ("\nAnswer:")
    categories: tuple      # the categories scores are also reported for, in order
    category_of: dict      # subject -> category
    reports_acc_norm: bool  # lm-eval's task lists acc_norm beside acc (ceval-valid does, mmlu does not)

    def read_records(self, path):
        """Dicts with question, A, B, C, D and answer."""
        if self.has_header_row:
            return read_csv_records(path, COLUMNS)
        return [dict(zip(COLUMNS, row)) for row in read_csv_rows(path, COLUMNS)]

    def header_text(self, subject):
        return self.header.format(subject=self.subject_names.get(subject, subject.replace("_", " ")))

    def question_text(self, record):
        options = "".join(f"\n{letter}. {record[letter]}" for letter in LETTERS)
        return f"{record['question'].strip()}{options}{self.cue}"

    def shot_text(self, record, path, number):
        """lm-eval's shot: the question, its target delimiter " ", the answer letter, the shot separator."""
        return f"{self.question_text(record)} {answer_letter(record, path, number)}\n\n"

    def folders(self, data_path):
        """(split folder, dev folder): data_path may be the root, its data/ folder, or the split folder itself;
        dev/ sits beside the split folder."""
        pattern = f"*_{self.split}.csv"
        for root in (data_path, os.path.join(data_path, "data")):
            if files_in(os.path.join(root, self.split), pattern):
                return os.path.join(root, self.split), os.path.join(root, "dev")
        if files_in(data_path, pattern):
            return data_path, os.path.join(os.path.dirname(os.path.abspath(data_path)), "dev")
        raise layout_error(self.task, data_path, self.layout)

    def subject_questions(self, subject, path, dev_path):
        shots = ()
        if os.path.isfile(dev_path):
            dev = self.read_records(dev_path)[:SHOTS]
            shots = tuple(self.shot_text(record, dev_path, n) for n, record in enumerate(dev, 1))
        else:
            logger.warning("%s: %s not found; %s is asked without shots", self.task, dev_path, subject)
        header = self.header_text(subject)
        choices = tuple(f" {letter}" for letter in LETTERS)
        return [ChoiceQuestion(subject, FewShotPrompt(self.question_text(record), header, shots), choices,
                               LETTERS.index(answer_letter(record, path, number)), LETTERS)
                for number, record in enumerate(self.read_records(path), 1)]

    def questions(self, data_path):
        folder, dev_folder = self.folders(data_path)
        suffix = f"_{self.split}.csv"
        questions = []
        for path in files_in(folder, f"*{suffix}"):
            subject = os.path.basename(path)[:-len(suffix)]
            questions += self.subject_questions(subject, path, os.path.join(dev_folder, f"{subject}_dev.csv"))
        return questions

    def evaluate(self, run, questions):
        return run.choice_task(questions, "subjects", self.categories, self.category_of, self.reports_acc_norm)


def answer_letter(record, path, number):
    answer = str(record["answer"]).strip()
    if answer not in LETTERS:
        raise DataError(f"{path}: row {number}: answer: expected one of A, B, C, D, got {record['answer']!r}")
    return answer
