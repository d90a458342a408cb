"""alpaca_data.json (instruction, input, output) -> conversation records for llama_preprocess.py --dataset_type qa.

    python mindformers/tools/dataset_preprocess/llama/alpaca_converter.py \\
        --data_path alpaca_data.json --output_path alpaca-data-conversation.json

Each row becomes {"id": "<n>", "conversations": [{"from": "human", "value": instruction [+ "\\n\\n" + input]},
{"from": "gpt", "value": output}]}: the ShareGPT layout that FastChat's (fschat) training data uses, so the
fschat prompt template is applied at preprocessing time (--template) rather than baked into the text here.
Rows without an instruction or output are skipped and counted; the output file appears only when complete.
"""
import json
import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout that is not pip-installed
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 4)))

from mindformers.checkpoint.atomic import atomic_files  # noqa: E402
from mindformers.tools.dataset_preprocess.conversation_records import (  # noqa: E402
    UnusableRecord, alpaca_to_conversation, load_json_records)
from mindformers.tools.errors import DataError, OneLineParser, exit_on_user_error  # noqa: E402


def parse_args(argv=None):
    parser = OneLineParser(prog="alpaca_converter.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", required=True, help="alpaca_data.json: a JSON list (or .jsonl) of rows")
    parser.add_argument("--output_path", required=True, help="the conversation .json to write")
    return parser.parse_args(argv)


def convert(rows):
    """(records, skipped reasons -> count)."""
    from tqdm import tqdm
    records, skipped = [], {}
    for row in tqdm(rows, desc="converting", unit="rows", mininterval=0.5, dynamic_ncols=True):
        try:
            if not isinstance(row, dict):
                raise UnusableRecord("row that is not a JSON object")
            conversation = alpaca_to_conversation(row)
        except UnusableRecord as reason:
            skipped[str(reason)] = skipped.get(str(reason), 0) + 1
            continue
        records.append({"id": str(len(records) + 1), "conversations": conversation})
    return records, skipped


def write_json_atomic(records, output_path):
    output_path = os.path.abspath(os.path.expanduser(output_path))
    folder = os.path.dirname(output_path)
    if os.path.isdir(output_path):
        raise DataError(f"--output_path: {output_path} is a folder; expected a file name")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DataError(f"--output_path: cannot write to {folder} ({error.strerror or error})") from None
    with atomic_files(output_path) as (temp,), open(temp, "w", encoding="utf-8") as stream:
        json.dump(records, stream, ensure_ascii=False, indent=1)
    return output_path


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.data_path):
        raise DataError(f"--data_path: file not found: {args.data_path}")
    records, skipped = convert(load_json_records(args.data_path))
    if not records:
        raise DataError(f"--data_path: {args.data_path} holds no usable alpaca rows (instruction and output); "
                        "nothing written")
    path = write_json_atomic(records, args.output_path)
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
    print(f"conversations: {len(records)}  rows skipped: {sum(skipped.values())}{f' ({detail})' if detail else ''}")
    print(f"wrote {path}")
    return records, skipped


if __name__ == "__main__":
    main()
