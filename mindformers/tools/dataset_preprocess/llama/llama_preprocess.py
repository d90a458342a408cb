"""Raw text -> packed MindRecord rows for pretraining any family (the MindFormers llama_preprocess.py command line).

    python mindformers/tools/dataset_preprocess/llama/llama_preprocess.py --dataset_type wiki \\
        --input_glob 'data/*.txt' --model_file tokenizer.model --seq_length 4096 --output_file out.mindrecord

--model_file is a sentencepiece .model, an HF tokenizer.json or a HF model folder (its tokenizer_config.json
names the special tokens and chat template); the tokenizer decides the family's rules.

wiki mode: every document (see text_sources for how files split into documents) is tokenized as
[bos] text [eos] (bos when the tokenizer adds one: Llama, Gemma yes; Qwen, Yi no; --add_bos / --no-add_bos
override); the documents are concatenated and cut into rows of seq_length + 1 tokens (the model predicts
tokens 1..n from tokens 0..n-1 of one row); the last partial row is dropped. Rows go to one int32 column
`input_ids`. Rows hold no padding, so no token is ever masked as padding, whatever pad_token_id is.

qa mode (instruction fine-tuning): .json/.jsonl conversations (alpaca_converter.py output, ShareGPT
`conversations`, or alpaca rows) rendered with an fschat template or the model folder's own Jinja chat
template (--template tokenizer), one conversation per row of seq_length + 1 tokens, with a `labels` column that
carries -100 everywhere except assistant replies (see instruction_rows).
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout that is not pip-installed
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 4)))

from mindformers.tools.dataset_preprocess.instruction_rows import preprocess_qa, summary  # noqa: E402
from mindformers.tools.dataset_preprocess.mindrecord_output import AtomicMindRecordWriter  # noqa: E402
from mindformers.tools.dataset_preprocess.text_sources import find_input_files, iter_documents  # noqa: E402
from mindformers.tools.dataset_preprocess.token_packing import TokenPacker  # noqa: E402
from mindformers.tools.dataset_preprocess.tokenize_documents import encode_documents, load_tokenizer  # noqa: E402
from mindformers.tools.errors import ConfigError, OneLineParser, exit_on_user_error  # noqa: E402

WRITE_BATCH_ROWS = 1024  # rows handed to FileWriter at a time: bounded memory, few calls
SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}}


def parse_args(argv=None):
    parser = OneLineParser(prog="llama_preprocess.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_type", default="wiki", choices=["wiki", "qa"])
    parser.add_argument("--input_glob", required=True, help="files to read: .txt (any other extension is read "
                        "as text), .jsonl, .json, .parquet; quote the pattern; ** matches folders")
    parser.add_argument("--model_file", required=True, help="sentencepiece tokenizer.model, HF tokenizer.json, or "
                        "the HF model folder holding them (with tokenizer_config.json)")
    parser.add_argument("--seq_length", type=int, default=2048, help="model sequence length; rows hold one more")
    parser.add_argument("--output_file", required=True, help="the .mindrecord to write (with its .db index)")
    parser.add_argument("--json_key", default="text", help="text key of .json/.jsonl objects, column of .parquet")
    parser.add_argument("--workers", type=int, default=1, help="tokenizer processes")
    parser.add_argument("--file_partition", type=int, default=1, help="number of MindRecord shard files")
    parser.add_argument("--add_bos", action=argparse.BooleanOptionalAction, default=None,
                        help="start every document (qa: every conversation of an fschat template) with bos; "
                        "default: when the tokenizer adds bos (add_bos_token)")
    parser.add_argument("--eos_token", default=None, help="the token that ends each document, when the tokenizer "
                        "names none or another one (e.g. '<|endoftext|>' for a chat model whose eos is <|im_end|>)")
    parser.add_argument("--repeat", type=int, default=1, help="pass over the input this many times")
    parser.add_argument("--template", default="vicuna_v1.1", help="qa: the template that renders each conversation: "
                        "an fschat name (vicuna_v1.1, llama-2, alpaca, qwen-7b-chat, Yi-34b-chat, ...), 'tokenizer' for the "
                        "model folder's own Jinja chat_template, or a .jinja file")
    # accepted so MindFormers command lines keep working; the tokenizer is always the one in --model_file
    parser.add_argument("--tokenizer", default="llama", help=argparse.SUPPRESS)
    parser.add_argument("--pad_token_id", type=int, default=None, help="qa: id that pads rows (default: the "
                        "tokenizer's pad token, else 0); padded positions are never learned")
    return parser.parse_args(argv)


def check_args(args):
    for flag in ("seq_length", "workers", "file_partition", "repeat"):
        value = getattr(args, flag)
        if value < 1:
            raise ConfigError(f"--{flag}: expected a positive integer, got {value}")


def progress_bar(total_bytes):
    from tqdm import tqdm
    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="tokenizing",
                mininterval=0.5, dynamic_ncols=True)


def expected_output_bytes(paths, repeat):
    """A generous bound on the int32 rows written: at most one token per input byte (x5 for parquet, which
    stores text compressed), 4 bytes per token."""
    return 4 * repeat * sum(os.path.getsize(path) * (5 if path.lower().endswith(".parquet") else 1)
                            for path in paths)


def preprocess_wiki(args):
    """Tokenize, pack and write; returns the summary counts."""
    paths = find_input_files(args.input_glob)
    load_tokenizer(args.model_file, eos_token=args.eos_token)  # fail before any worker starts or file is created
    row_length = args.seq_length + 1
    packer = TokenPacker(row_length)
    counts = {"documents": 0, "tokens": 0, "rows": 0}
    total_bytes = sum(os.path.getsize(path) for path in paths) * args.repeat
    with progress_bar(total_bytes) as bar, AtomicMindRecordWriter(
            args.output_file, SCHEMA, shard_num=args.file_partition, description="llama pretraining rows",
            expected_bytes=expected_output_bytes(paths, args.repeat)) as out:
        documents = (text for _ in range(args.repeat) for text in iter_documents(paths, args.json_key, bar.update))
        for tokens, document_count in encode_documents(documents, args.model_file, args.add_bos, args.workers,
                                                       eos_token=args.eos_token):
            counts["documents"] += document_count
            counts["tokens"] += tokens.size
            rows = packer.add(tokens)
            for start in range(0, len(rows), WRITE_BATCH_ROWS):
                out.write([{"input_ids": row} for row in rows[start:start + WRITE_BATCH_ROWS]])
        counts["rows"] = out.rows
        counts["dropped"] = packer.tail
        if out.rows == 0:
            raise ConfigError(f"--seq_length: the input holds {counts['tokens']} tokens, fewer than one row of "
                              f"{row_length} (seq_length + 1); nothing written")
        counts["files"] = out.output_files()
    return counts


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    if args.dataset_type == "qa":
        counts = preprocess_qa(args)
        print(summary(counts, args.seq_length))
        print(f"wrote {', '.join(counts['files'])}")
        return counts
    counts = preprocess_wiki(args)
    print(f"documents: {counts['documents']}  tokens: {counts['tokens']}  rows written: {counts['rows']} "
          f"x {args.seq_length + 1} tokens  tokens dropped at the tail: {counts['dropped']}")
    print(f"wrote {', '.join(counts['files'])}")
    return counts


if __name__ == "__main__":
    main()
