"""Documents out of raw text files, streamed one at a time with their byte cost for a progress bar.

Formats by file extension:
  .jsonl      one JSON object per line; the document is obj[json_key]
  .json       a JSON list of objects (loaded whole: JSON lists cannot be streamed)
  .parquet    the `json_key` column, read one row group batch at a time
  else text   (.txt, wikitext's .tokens, ...): documents are separated by blank lines, the way wikitext and
              most plain-text corpora separate articles/paragraphs; a file with one document per line and
              no blank lines is therefore read as one document, which packing makes harmless.
Empty documents are skipped.
"""
import glob
import json
import os

from mindformers.tools.errors import DataError
from mindformers.tools.json_file import load_json


def find_input_files(pattern, flag="--input_glob"):
    paths = sorted(path for path in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(path))
    if not paths:
        raise DataError(f"{flag}: no files match {pattern!r}")
    return paths


def file_format(path):
    lower = path.lower()
    for ext in (".jsonl", ".json", ".parquet"):
        if lower.endswith(ext):
            return ext[1:]
    return "text"


def document_text(value, where, key):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: key {key!r} holds a {type(value).__name__}, expected a string")
    return value


def read_text(path, advance):
    lines = []
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            advance(len(raw))
            try:
                line = raw.decode("utf-8").rstrip()
            except UnicodeDecodeError:
                raise DataError(f"{path}:{number}: not UTF-8 text") from None
            if line.strip():
                lines.append(line)
            elif lines:
                yield "\n".join(lines)
                lines = []
    if lines:
        yield "\n".join(lines)


def read_jsonl(path, key, advance):
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            advance(len(raw))
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise DataError(f"{path}:{number}: not a valid JSON line ({error})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            if key not in record:
                raise DataError(f"{path}:{number}: no key {key!r} (has: {', '.join(record) or 'nothing'}); "
                                "choose the text key with --json_key")
            yield document_text(record[key], f"{path}:{number}", key)


def read_json(path, key, advance):
    records = load_json(path)
    advance(os.path.getsize(path))
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(records).__name__} "
                        "(one object per line belongs in a .jsonl file)")
    for index, record in enumerate(records):
        if not isinstance(record, dict) or key not in record:
            has = ", ".join(record) if isinstance(record, dict) else type(record).__name__
            raise DataError(f"{path}: item {index}: no key {key!r} (has: {has}); choose the text key with --json_key")
        yield document_text(record[key], f"{path}: item {index}", key)


def read_parquet(path, key, advance, batch_rows=1024):
    try:
        import pyarrow.parquet as pq  # only parquet inputs need pyarrow
    except ImportError as error:
        raise DataError(f"{path}: reading .parquet needs a working pyarrow ({error})") from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a file that is not parquet
        raise DataError(f"{path}: not a readable parquet file ({error})") from None
    names = parquet.schema_arrow.names
    if key not in names:
        raise DataError(f"{path}: no column {key!r} (has: {', '.join(names)}); choose the text column with --json_key")
    total_rows = max(parquet.metadata.num_rows, 1)
    size = os.path.getsize(path)
    first_row = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=[key]):
        advance(size * batch.num_rows // total_rows)
        for index, value in enumerate(batch.column(0).to_pylist(), start=first_row):
            yield document_text(value, f"{path}: row {index}", key)
        first_row += batch.num_rows


def iter_documents(paths, json_key="text", advance=lambda nbytes: None):
    """Yield the non-empty documents of all files in order; `advance(nbytes)` reports reading progress."""
    for path in paths:
        kind = file_format(path)
        if kind == "jsonl":
            documents = read_jsonl(path, json_key, advance)
        elif kind == "json":
            documents = read_json(path, json_key, advance)
        elif kind == "parquet":
            documents = read_parquet(path, json_key, advance)
        else:
            documents = read_text(path, advance)
        for text in documents:
            if text.strip():
                yield text
