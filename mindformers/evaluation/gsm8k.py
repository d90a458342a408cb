"""GSM8K: grade-school word problems, 8-shot chain of thought, greedy generation; the number after "The answer
is" (else the last number) is compared with the number after "####" in the reference.

Layout (openai/grade-school-math): JSON Lines rows {"question", "answer": "...reasoning...\\n#### 42"} in
test.jsonl, or every *.jsonl of the folder, or the file itself.
"""
from mindformers.evaluation.accuracy import accuracy_tables
from mindformers.evaluation.data_files import read_jsonl
from mindformers.evaluation.jsonl_sources import file_stem, jsonl_files
from mindformers.evaluation.numeric_answers import extract_number, parse_number, same_number
from mindformers.evaluation.prompts import FewShotPrompt
from mindformers.tools.errors import DataError

DEFAULT_MAX_NEW_TOKENS = 200
LAYOUT = "test.jsonl (or *.jsonl) rows {question, answer: '... #### <number>'}"
STOP_STRINGS = ("\n\n", "Q:")

# Worked examples in the style of the chain-of-thought paper's GSM8K prompt: short steps, then "The answer is N."
EXEMPLARS = (
    ("A baker makes 24 muffins in the morning and 18 in the afternoon. She sells 30 of them. How many muffins are "
     "left?",
     "She makes 24 + 18 = 42 muffins. After selling 30, 42 - 30 = 12 are left. The answer is 12."),
    ("Tom reads 15 pages a day. How many pages does he read in 2 weeks?",
     "Two weeks have 2 * 7 = 14 days. He reads 15 * 14 = 210 pages. The answer is 210."),
    ("A box holds 6 eggs. Maria needs 50 eggs for a party. How many boxes must she buy?",
     "8 boxes hold 8 * 6 = 48 eggs, which is 2 too few, so she needs one more box: 8 + 1 = 9. The answer is 9."),
    ("A shirt costs $20 and is on sale for 25% off. How much does the shirt cost on sale?",
     "25% of $20 is 20 * 0.25 = $5. The sale price is 20 - 5 = $15. The answer is 15."),
    ("Jake has 3 times as many marbles as Lily. Lily has 7 marbles. How many marbles do they have together?",
     "Jake has 3 * 7 = 21 marbles. Together they have 21 + 7 = 28 marbles. The answer is 28."),
    ("A train travels at 60 miles per hour for 2 hours and then at 45 miles per hour for 1 hour. How far does it "
     "travel?",
     "First it travels 60 * 2 = 120 miles, then 45 * 1 = 45 miles. In total it travels 120 + 45 = 165 miles. "
     "The answer is 165."),
    ("A garden has 4 rows of tomato plants with 9 plants in each row. Each plant gives 5 tomatoes. How many "
     "tomatoes does the garden give?",
     "There are 4 * 9 = 36 plants. They give 36 * 5 = 180 tomatoes. The answer is 180."),
    ("Anna had $100. She spent $35 on a jacket and half of what was left on books. How much money does she have "
     "now?",
     "After the jacket she had 100 - 35 = $65. She spent 65 / 2 = $32.50 on books, so she has 65 - 32.50 = $32.50 "
     "left. The answer is 32.5."),
)
SHOTS = tuple(f"Q: {question}\nA: {answer}\n\n" for question, answer in EXEMPLARS)


def gold_number(record, path, number):
    answer = str(record["answer"])
    value = parse_number(answer.split("####")[-1].strip()) if "####" in answer else None
    if value is None:
        raise DataError(f"{path}: line {number}: answer: expected text ending in '#### <number>', "
                        f"got {answer[-40:]!r}")
    return value


def load_questions(data_path):
    """(group, prompt, gold number) per question."""
    questions = []
    for path in jsonl_files(data_path, ("test.jsonl",), "GSM8K", LAYOUT):
        questions += [(file_stem(path), FewShotPrompt(f"Q: {record['question']}\nA:", shots=SHOTS),
                       gold_number(record, path, number))
                      for number, record in read_jsonl(path, ("question", "answer"))]
    return questions


def evaluate(run, questions):
    texts = run.generate([prompt for _, prompt, _ in questions], STOP_STRINGS)
    records = []
    for (group, _, gold), text in zip(questions, texts):
        predicted = extract_number(text)
        records.append({"group": group, "output": text, "predicted": predicted, "answer": gold,
                        "correct": same_number(predicted, gold)})
    return run.summary(accuracy_tables(records, "files")), records
