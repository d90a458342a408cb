"""Build the instruction samples from python_docs.txt: real question/answer pairs for fine-tuning demos and tests.

Each help topic of python_docs.txt starts with its title line (`The "assert" statement`) followed by paragraphs.
  python_docs_alpaca.json    alpaca rows (instruction, input, output): "Explain <title> in Python." (every third
                             topic asks through `input` instead) -> the topic's first paragraph (up to 300 chars)
  python_docs_sharegpt.json  two-turn ShareGPT records (from/value): a question about the topic -> its first
                             paragraph; "Tell me more." -> its second paragraph (up to 200 chars each)
Both derive from the Python documentation (PSF license, see README.md). Output is deterministic for a given
python_docs.txt; files are written under a temporary name and renamed.

    python datasets/sample/build_instruction_sample.py [--output_dir datasets/sample]
"""
import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "python_docs.txt")
ALPACA = "python_docs_alpaca.json"
SHAREGPT = "python_docs_sharegpt.json"


def topic_documents(path=SOURCE):
    """(title, [paragraph, ...]) of every topic with at least two paragraphs."""
    with open(path, encoding="utf-8") as stream:
        for document in stream.read().split("\n\n"):
            lines = [line.strip() for line in document.strip("\n").splitlines() if line.strip()]
            if len(lines) >= 3:
                yield lines[0], lines[1:]


def alpaca_rows(path=SOURCE, limit=None):
    rows = []
    for index, (title, paragraphs) in enumerate(topic_documents(path)):
        if limit is not None and len(rows) >= limit:
            break
        answer = paragraphs[0][:300]
        if index % 3 == 2:
            rows.append({"instruction": "Answer using the Python documentation.", "input": f"What is {title}?",
                         "output": answer})
        else:
            rows.append({"instruction": f"Explain {title} in Python.", "input": "", "output": answer})
    return rows


def sharegpt_records(path=SOURCE, limit=None):
    records = []
    for title, paragraphs in topic_documents(path):
        if limit is not None and len(records) >= limit:
            break
        records.append({"id": f"t{len(records)}", "conversations": [
            {"from": "human", "value": f"What does the documentation say about {title}?"},
            {"from": "gpt", "value": paragraphs[0][:200]},
            {"from": "human", "value": "Tell me more."},
            {"from": "gpt", "value": paragraphs[1][:200]}]})
    return records


def write_json(records, path):
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as stream:
        json.dump(records, stream, ensure_ascii=False, indent=1)
        stream.write("\n")
    os.replace(temp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=HERE)
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(alpaca_rows(), os.path.join(args.output_dir, ALPACA))
    write_json(sharegpt_records(), os.path.join(args.output_dir, SHAREGPT))
    print(f"wrote {ALPACA} and {SHAREGPT} in {args.output_dir}")


if __name__ == "__main__":
    main()
