"""llama_preprocess.py --dataset_type wiki: real text -> real tokenizer -> packed MindRecord rows."""
import json
import os
import shutil

import numpy as np
import pytest
from mindspore.mindrecord import FileReader

from mindformers.models.llama.llama_tokenizer import LlamaTokenizer
from mindformers.tools.dataset_preprocess.llama.llama_preprocess import main
from mindformers.tools.dataset_preprocess.text_sources import iter_documents
from tests.e2e.helpers import REPO, assert_one_line_error, run_cli

SCRIPT = os.path.join("mindformers", "tools", "dataset_preprocess", "llama", "llama_preprocess.py")
SEQ = 32


def read_rows(path):
    reader = FileReader(str(path))
    try:
        rows = [record["input_ids"] for _, record in zip(range(10 ** 9), reader.get_next())]
    finally:
        reader.close()
    assert all(row.dtype == np.int32 for row in rows)
    return np.stack(rows)


def expected_stream(paths, model_file, add_bos=True, json_key="text"):
    """What packing must reproduce: every document tokenized as [bos] text [eos], concatenated."""
    tokenizer = LlamaTokenizer(vocab_file=model_file)
    ids = []
    for text in iter_documents(paths, json_key):
        ids += ([tokenizer.bos_token_id] if add_bos else []) + tokenizer.encode(text, add_special_tokens=False)
        ids.append(tokenizer.eos_token_id)
    return np.asarray(ids, dtype=np.int32)


def run(tmp_path, inputs, model_file, *extra, name="out.mindrecord", seq=SEQ):
    output = tmp_path / name
    counts = main(["--dataset_type", "wiki", "--input_glob", str(inputs), "--model_file", str(model_file),
                   "--seq_length", str(seq), "--output_file", str(output), *map(str, extra)])
    return output, counts


@pytest.fixture(scope="module")
def small_docs(sample_text_files):
    """The first documents of the sample text: enough for several rows, quick to tokenize."""
    return list(iter_documents(sample_text_files))[:12]


def check_packing(rows, paths, model_file):
    assert rows.shape[1] == SEQ + 1
    stream = expected_stream(paths, model_file)
    tokenizer = LlamaTokenizer(vocab_file=model_file)
    assert 0 <= len(stream) - rows.size < SEQ + 1  # only the tail that does not fill a row is dropped
    np.testing.assert_array_equal(rows.reshape(-1), stream[:rows.size])
    assert stream[0] == tokenizer.bos_token_id
    assert (stream == tokenizer.eos_token_id).sum() == len(list(iter_documents(paths)))


def test_rows_are_the_tokenized_documents_joined_with_eos(wiki_mindrecord, wiki_text_file, sp_model_file):
    rows = read_rows(wiki_mindrecord)
    assert 100 <= len(rows) <= 400  # the size the tiny e2e training run is planned for
    check_packing(rows, [wiki_text_file], sp_model_file)


def test_text_files_split_into_documents_at_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Title one\n  code line\n\n\n   \nSecond doc line 1\nline 2\n\nthird\n")
    assert list(iter_documents([str(path)])) == ["Title one\n  code line", "Second doc line 1\nline 2", "third"]


def write_formats(folder, docs, parquet=False):
    """The same documents as .txt, .jsonl, .json (and .parquet in several small row groups)."""
    kinds = ("txt", "jsonl", "json") + (("parquet",) if parquet else ())
    paths = {}
    for kind in kinds:
        (folder / kind).mkdir()
        paths[kind] = folder / kind / f"docs.{kind}"
    paths["txt"].write_text("\n\n".join(docs) + "\n")
    paths["jsonl"].write_text("".join(json.dumps({"id": i, "content": d}) + "\n" for i, d in enumerate(docs)))
    paths["json"].write_text(json.dumps([{"content": d} for d in docs]))
    if parquet:
        pa = pytest.importorskip("pyarrow", reason="pyarrow does not import (pyarrow>=26 needs NumPy 2)",
                                 exc_type=ImportError)
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"content": docs, "n": list(range(len(docs)))}), str(paths["parquet"]),
                       row_group_size=3)
    return paths


@pytest.mark.parametrize("parquet", [False, True], ids=["text-jsonl-json", "parquet"])
def test_every_input_format_gives_the_same_rows(tmp_path, small_docs, sp_model_file, parquet):
    paths = write_formats(tmp_path, small_docs, parquet)
    if parquet:
        paths = {kind: path for kind, path in paths.items() if kind in ("jsonl", "parquet")}
    results = {}
    for kind, path in paths.items():
        output, counts = run(tmp_path, path, sp_model_file, "--json_key", "content", name=f"{kind}.mindrecord")
        assert counts["documents"] == len(small_docs)
        results[kind] = read_rows(output)
    stream = expected_stream([str(paths["jsonl"])], sp_model_file, json_key="content")
    for kind, rows in results.items():
        np.testing.assert_array_equal(rows.reshape(-1), stream[:rows.size], err_msg=kind)


def test_hf_tokenizer_json(tmp_path, small_docs, bpe_tokenizer_json):
    from mindformers.models.llama.llama_tokenizer_fast import LlamaTokenizerFast
    text = tmp_path / "docs.txt"
    text.write_text("\n\n".join(small_docs))
    output, counts = run(tmp_path, text, bpe_tokenizer_json)
    tokenizer = LlamaTokenizerFast(tokenizer_file=bpe_tokenizer_json)
    stream = []
    for doc in small_docs:
        stream += [tokenizer.bos_token_id] + tokenizer.encode(doc, add_special_tokens=False) + [tokenizer.eos_token_id]
    rows = read_rows(output)
    assert counts["tokens"] == len(stream)
    np.testing.assert_array_equal(rows.reshape(-1), np.asarray(stream[:rows.size], dtype=np.int32))


def test_two_workers_write_what_one_writes(tmp_path, sample_text_files, sp_model_file):
    one, counts_one = run(tmp_path, sample_text_files[0], sp_model_file, "--workers", "1", name="one.mindrecord")
    two, counts_two = run(tmp_path, sample_text_files[0], sp_model_file, "--workers", "2", name="two.mindrecord")
    assert {k: v for k, v in counts_one.items() if k != "files"} == \
        {k: v for k, v in counts_two.items() if k != "files"}
    np.testing.assert_array_equal(read_rows(one), read_rows(two))
    check_packing(read_rows(two), sample_text_files, sp_model_file)  # the whole sample, many chunks


def test_no_bos_partitions_and_summary(tmp_path, small_docs, sp_model_file, capsys):
    paths = write_formats(tmp_path, small_docs)
    with_bos, counts = run(tmp_path, paths["txt"], sp_model_file, name="bos.mindrecord")
    out = capsys.readouterr().out
    assert f"documents: {len(small_docs)}" in out and f"rows written: {counts['rows']}" in out
    assert f"tokens: {counts['tokens']}" in out and f"tokens dropped at the tail: {counts['dropped']}" in out
    assert counts["tokens"] == counts["rows"] * (SEQ + 1) + counts["dropped"]
    _, no_bos = run(tmp_path, paths["txt"], sp_model_file, "--no-add_bos", name="nobos.mindrecord")
    assert counts["tokens"] - no_bos["tokens"] == len(small_docs)
    parted, _ = run(tmp_path / "txt", paths["txt"], sp_model_file, "--file_partition", "2", name="part.mindrecord")
    names = sorted(os.listdir(tmp_path / "txt"))
    assert names == ["docs.txt", "part.mindrecord0", "part.mindrecord0.db", "part.mindrecord1", "part.mindrecord1.db"]
    from mindformers.dataset import MindDataset
    shards = MindDataset(str(tmp_path / "txt"))
    assert shards.num_rows == counts["rows"]
    rows = np.concatenate([b["input_ids"] for b in shards.read_batches(np.arange(shards.num_rows), 64)])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, read_rows(with_bos)))


def test_failure_midway_leaves_the_old_output_and_no_temporary_files(tmp_path, small_docs, sp_model_file, capsys):
    good = tmp_path / "in" / "a.jsonl"
    good.parent.mkdir()
    good.write_text("".join(json.dumps({"text": d}) + "\n" for d in small_docs * 3))
    out_dir = tmp_path / "out"
    output, _ = run(out_dir, good, sp_model_file)
    before = read_rows(output)
    with open(good, "a", encoding="utf-8") as stream:
        stream.write('{"text": "unfinished\n')
    with pytest.raises(SystemExit) as exit_info:
        run(out_dir, good, sp_model_file)
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"a.jsonl:{len(small_docs) * 3 + 1}:" in line
    assert sorted(os.listdir(out_dir)) == ["out.mindrecord", "out.mindrecord.db"]
    np.testing.assert_array_equal(read_rows(output), before)


def user_error_cases(tmp_path, sp_model_file):
    text = tmp_path / "in" / "doc.txt"
    text.parent.mkdir()
    text.write_text("some words here\n" * 40)
    bad_json = tmp_path / "in" / "bad.jsonl"
    bad_json.write_text('{"text": "fine"}\n{"text": oops}\n')
    no_key = tmp_path / "in" / "nokey.jsonl"
    no_key.write_text('{"text": "fine"}\n{"body": "x"}\n')
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = tmp_path / "out" / "o.mindrecord"
    base = {"--dataset_type": "wiki", "--input_glob": text, "--model_file": sp_model_file, "--seq_length": 8,
            "--output_file": out}
    cases = [
        ({"--input_glob": tmp_path / "nothing" / "*.txt"}, ["--input_glob", "no files match"]),
        ({"--input_glob": bad_json}, ["bad.jsonl:2:", "not a valid JSON line"]),
        ({"--input_glob": no_key}, ["nokey.jsonl:2:", "no key 'text'", "body", "--json_key"]),
        ({"--seq_length": 0}, ["--seq_length", "positive integer"]),
        ({"--seq_length": 4096}, ["--seq_length", "fewer than one row", "nothing written"]),
        ({"--output_file": blocker / "o.mindrecord"}, ["--output_file", "cannot write"]),
        ({"--output_file": text.parent}, ["--output_file", "is a folder"]),
        ({"--model_file": tmp_path / "missing.model"}, ["--model_file", "missing.model"]),
        ({"--model_file": text}, ["--model_file", "doc.txt"]),
        ({"--dataset_type": "qa"}, ["--input_glob", "doc.txt", "qa data must be .json"]),
    ]
    return cases, base, out.parent, text


def test_user_errors_are_one_line_and_leave_nothing(tmp_path, sp_model_file, capsys):
    cases, base, out_dir, text = user_error_cases(tmp_path, sp_model_file)
    for change, fragments in cases:
        args = dict(base, **change)
        with pytest.raises(SystemExit) as exit_info:
            main([str(item) for pair in args.items() for item in pair])
        assert exit_info.value.code == 2, change
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, (change, lines)
        for fragment in fragments:
            assert fragment in lines[0], (change, lines[0])
        assert not out_dir.exists(), (change, os.listdir(out_dir))  # not even the folder it made
        assert sorted(os.listdir(text.parent)) == ["bad.jsonl", "doc.txt", "nokey.jsonl"], change


def test_command_line_in_a_subprocess(tmp_path, sample_text_files, sp_model_file):
    folder = tmp_path / "wiki"
    folder.mkdir()
    shutil.copyfile(sample_text_files[0], folder / "wiki.train.tokens")  # wikitext's name: read as text
    output = tmp_path / "wiki32.mindrecord"
    result = run_cli([SCRIPT, "--dataset_type", "wiki", "--input_glob", folder / "*.tokens", "--model_file",
                      sp_model_file, "--seq_length", SEQ, "--output_file", output, "--workers", 2], cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows written:" in result.stdout and "tokens dropped at the tail:" in result.stdout
    assert "tokenizing" in result.stderr  # the progress bar
    assert read_rows(output).shape[1] == SEQ + 1
    failed = run_cli([SCRIPT, "--dataset_type", "wiki", "--input_glob", folder / "*.json", "--model_file",
                      sp_model_file, "--output_file", tmp_path / "x.mindrecord"], cwd=REPO)
    assert_one_line_error(failed, "--input_glob", "no files match")
    assert not (tmp_path / "x.mindrecord").exists()
