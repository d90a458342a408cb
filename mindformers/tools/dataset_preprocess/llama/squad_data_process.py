"""SQuAD 1.1 json -> MindRecord rows for reading-comprehension finetuning (train) or evaluation (eval).

    python mindformers/tools/dataset_preprocess/llama/squad_data_process.py --input_file dev-v1.1.json \\
        --output_file squad2048.mindrecord --mode eval --max_length 2048 --tokenizer_type /path/tokenizer.model

Every question becomes the prompt
    Read the passage and answer the question below.\\n\\n### Instruction:\\n{context}\\n\\n### Input:\\n{question}
    \\n\\n### Response:
answered by its first reference answer. Columns (int32):
  train  input_ids = [bos] prompt answer [eos], padded to max_length + 1 (the trainer's row convention: the
         model's seq_length + 1); labels = input_ids on the answer and eos, -100 elsewhere.
  eval   input_ids = [bos] prompt, padded to max_length (what generation starts from); labels = the answer's
         ids padded to max_length (the reference the evaluation decodes and scores).
Padding uses --pad_token_id (default: the tokenizer's pad token, else 0). Questions that do not fit are
skipped and counted. --tokenizer_type names the tokenizer: a tokenizer.model / tokenizer.json path or the model
folder holding one (this build downloads nothing, so a bare name such as llama2_7b needs --model_file).
"""
import json
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script from a checkout that is not pip-installed
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 4)))

from mindformers.tools.dataset_preprocess.mindrecord_output import AtomicMindRecordWriter  # noqa: E402
from mindformers.tools.dataset_preprocess.tokenize_documents import load_tokenizer  # noqa: E402
from mindformers.tools.errors import ConfigError, DataError, OneLineParser, exit_on_user_error  # noqa: E402

PROMPT = ("Read the passage and answer the question below.\n\n### Instruction:\n{context}\n\n### Input:\n"
          "{question}\n\n### Response:")
IGNORE_TOKEN_ID = -100
SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}, "labels": {"type": "int32", "shape": [-1]}}
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")


def parse_args(argv=None):
    parser = OneLineParser(prog="squad_data_process.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_file", required=True, help="SQuAD-format json (train-v1.1.json, dev-v1.1.json)")
    parser.add_argument("--output_file", required=True, help="the .mindrecord to write (with its .db index)")
    parser.add_argument("--mode", default="train", choices=["train", "eval"])
    parser.add_argument("--max_length", type=int, default=2048, help="the model's seq_length")
    parser.add_argument("--tokenizer_type", default="llama2_7b",
                        help="tokenizer.model / tokenizer.json path, or a folder holding one")
    parser.add_argument("--model_file", default=None, help="the tokenizer file (overrides --tokenizer_type)")
    parser.add_argument("--pad_token_id", type=int, default=None)
    return parser.parse_args(argv)


def tokenizer_path(args):
    if args.model_file:
        return args.model_file, "--model_file"
    path = os.path.expanduser(args.tokenizer_type)
    if os.path.isdir(path):  # a model folder: its tokenizer_config.json names the special tokens
        if not any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES):
            raise ConfigError(f"--tokenizer_type: {path} holds no {' or '.join(TOKENIZER_FILES)}")
        return path, "--tokenizer_type"
    if os.path.isfile(path):
        return path, "--tokenizer_type"
    raise ConfigError(f"--tokenizer_type: {args.tokenizer_type!r} is not a tokenizer file or folder (tokenizers are "
                      "not downloaded by name: pass the path of the model's tokenizer.model, or --model_file)")


def read_questions(path):
    """[(context, question, answer)] of a SQuAD file, first reference answer each; malformed -> DataError."""
    try:
        with open(path, encoding="utf-8") as stream:
            squad = json.load(stream)
    except FileNotFoundError:
        raise DataError(f"--input_file: file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise DataError(f"--input_file: {path}:{error.lineno}: not valid JSON ({error.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"--input_file: {path}: not UTF-8 text") from None
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise DataError(f"--input_file: {path}: expected SQuAD format, an object with a 'data' list of articles")
    questions, unanswered = [], 0
    try:
        for article in squad["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [a["text"] for a in qa.get("answers") or [] if a.get("text")]
                    if not answers:
                        unanswered += 1
                        continue
                    questions.append((paragraph["context"], qa["question"], answers[0]))
    except (KeyError, TypeError) as error:
        raise DataError(f"--input_file: {path}: not SQuAD format (data[].paragraphs[].qas[] with context, "
                        f"question, answers; failed at {error})") from None
    return questions, unanswered


def pad(ids, length, value):
    return np.asarray(ids + [value] * (length - len(ids)), dtype=np.int32)


def encode_row(tokenizer, context, question, answer, mode, max_length, pad_id):
    """(input_ids, labels) or None when the question does not fit max_length."""
    bos = tokenizer.text_start_ids()
    prompt = bos + tokenizer.encode(PROMPT.format(context=context, question=question), add_special_tokens=False)
    # the answer follows "### Response:" after a space, as a generated continuation would
    answer_ids = tokenizer.encode(" " + answer.strip(), add_special_tokens=False)
    if mode == "eval":
        if len(prompt) > max_length or len(answer_ids) > max_length:
            return None
        return pad(prompt, max_length, pad_id), pad(answer_ids, max_length, pad_id)
    ids = prompt + answer_ids + [tokenizer.eos_token_id]
    if len(ids) > max_length + 1:
        return None
    input_ids = pad(ids, max_length + 1, pad_id)
    labels = np.full(max_length + 1, IGNORE_TOKEN_ID, dtype=np.int32)
    labels[len(prompt):len(ids)] = input_ids[len(prompt):len(ids)]
    return input_ids, labels


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    if args.max_length < 1:
        raise ConfigError(f"--max_length: expected a positive integer, got {args.max_length}")
    path, flag = tokenizer_path(args)
    tokenizer = load_tokenizer(path, flag)
    pad_id = args.pad_token_id if args.pad_token_id is not None else (tokenizer.pad_token_id or 0)
    questions, unanswered = read_questions(args.input_file)
    from tqdm import tqdm
    too_long = 0
    row_length = args.max_length + (1 if args.mode == "train" else 0)
    with AtomicMindRecordWriter(args.output_file, SCHEMA, description=f"squad {args.mode} rows",
                                expected_bytes=8 * row_length * max(len(questions), 1)) as out:
        rows = []
        for context, question, answer in tqdm(questions, desc=f"squad {args.mode}", unit="questions",
                                              mininterval=0.5, dynamic_ncols=True):
            row = encode_row(tokenizer, context, question, answer, args.mode, args.max_length, pad_id)
            if row is None:
                too_long += 1
                continue
            rows.append({"input_ids": row[0], "labels": row[1]})
        if not rows:
            raise DataError(f"--input_file: no question of {args.input_file} fits --max_length {args.max_length} "
                            f"({len(questions)} answered questions); nothing written")
        out.write(rows)
        files = out.output_files()
    print(f"questions written: {len(rows)} x {row_length} tokens  skipped: {too_long} longer than --max_length, "
          f"{unanswered} without an answer")
    print(f"wrote {', '.join(files)}")
    return {"rows": len(rows), "too_long": too_long, "unanswered": unanswered, "files": files}


if __name__ == "__main__":
    main()
