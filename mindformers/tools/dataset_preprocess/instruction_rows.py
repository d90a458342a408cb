"""llama_preprocess.py --dataset_type qa: conversation files -> MindRecord rows with input_ids and labels.

Every usable conversation becomes one row of seq_length + 1 tokens (truncated or padded; no packing, so a
row never mixes two conversations). Unusable records are counted by reason and reported, never fatal.
"""
import os

from mindformers.tools.dataset_preprocess.conversation_records import UnusableRecord, iter_records, normalize
from mindformers.tools.dataset_preprocess.conversation_tokenize import ConversationTokenizer, load_template
from mindformers.tools.dataset_preprocess.mindrecord_output import AtomicMindRecordWriter
from mindformers.tools.dataset_preprocess.text_sources import find_input_files
from mindformers.tools.dataset_preprocess.tokenize_documents import load_tokenizer
from mindformers.tools.errors import DataError

SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}, "labels": {"type": "int32", "shape": [-1]}}
WRITE_BATCH_ROWS = 256


def preprocess_qa(args):
    """Returns the summary counts: rows, skipped (reason -> count), truncated, files."""
    paths = find_input_files(args.input_glob)
    for path in paths:
        if not path.lower().endswith((".json", ".jsonl")):
            raise DataError(f"--input_glob: {path}: qa data must be .json (a list of records) or .jsonl")
    tokenizer = load_tokenizer(args.model_file, eos_token=getattr(args, "eos_token", None))
    template = load_template(args.template, tokenizer=tokenizer)
    row_length = args.seq_length + 1
    encoder = ConversationTokenizer(tokenizer, template, row_length, add_bos=args.add_bos,
                                    pad_token_id=args.pad_token_id)
    skipped, pending = {}, []
    from tqdm import tqdm
    total = sum(os.path.getsize(path) for path in paths) * args.repeat
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="tokenizing", mininterval=0.5,
              dynamic_ncols=True) as bar, AtomicMindRecordWriter(
                  args.output_file, SCHEMA, shard_num=args.file_partition, description="llama instruction rows",
                  expected_bytes=8 * row_length * max(total // 200, 1)) as out:
        for _ in range(args.repeat):
            for _, record in iter_records(paths, bar.update):
                try:
                    input_ids, labels = encoder.encode(*normalize(record))
                except UnusableRecord as reason:
                    skipped[str(reason)] = skipped.get(str(reason), 0) + 1
                    continue
                pending.append({"input_ids": input_ids, "labels": labels})
                if len(pending) >= WRITE_BATCH_ROWS:
                    out.write(pending)
                    pending = []
        out.write(pending)
        if out.rows == 0:
            detail = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
            raise DataError(f"--input_glob: no usable conversation in {args.input_glob} ({detail or 'no records'}); "
                            "nothing written")
        files = out.output_files()
        rows = out.rows
    return {"rows": rows, "skipped": skipped, "truncated": encoder.truncated, "files": files}


def summary(counts, seq_length):
    skipped = counts["skipped"]
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
    return (f"conversations written: {counts['rows']} x {seq_length + 1} tokens  truncated: {counts['truncated']}  "
            f"skipped: {sum(skipped.values())}{f' ({detail})' if detail else ''}")
