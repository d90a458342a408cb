"""Build python_docs.txt: CPython's pydoc topic help (real English prose with code) as training text.

The text is the `pydoc_data.topics` module that ships with CPython (PSF license). Output is
deterministic for a given CPython version: topics in sorted order, one paragraph per line, code
lines kept as their own lines, and a blank line between topics.

    python datasets/sample/build_sample.py [--output datasets/sample/python_docs.txt]
"""
import argparse
import os
import re
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "python_docs.txt")
# Lines that only underline a heading (reST style) carry no words.
UNDERLINE = re.compile(r"^([*=\-~^\"'#+])\1{2,}\s*$")


LIST_MARKER = re.compile(r"^(\*|-|\d+\.|\(\d+\))\s+")


def is_wrapped_prose(lines):
    """True for a paragraph that pydoc wrapped at ~70 columns (as opposed to code or a table).

    Wrapped prose: every line but the last is long, continuation lines line up with the first
    line's text (after an optional list marker), and there is no grammar or prompt syntax.
    """
    marker = LIST_MARKER.match(lines[0])
    indent = len(marker.group(0)) if marker else 0
    if any(token in line for line in lines for token in ("::=", ">>>", "...:")):
        return False
    for line in lines[1:]:
        if len(line) - len(line.lstrip(" ")) != indent:
            return False
    return all(len(line) >= 50 for line in lines[:-1])


def topic_lines(text):
    """One line per prose paragraph; code, grammar and tables keep their own (dedented) lines."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.rstrip() for line in block.split("\n") if line.strip() and not UNDERLINE.match(line)]
        if not lines:
            continue
        lines = textwrap.dedent("\n".join(lines)).split("\n")
        if len(lines) == 1 or is_wrapped_prose(lines):
            out.append(" ".join(line.strip() for line in lines))
        else:
            out.extend(lines)
    return out


def build(output):
    from pydoc_data.topics import topics

    documents = ["\n".join(topic_lines(topics[name])) for name in sorted(topics)]
    text = "\n\n".join(doc for doc in documents if doc) + "\n"
    tmp = f"{output}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as stream:
        stream.write(text)
    os.replace(tmp, output)  # never leave a half-written sample behind
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    text = build(args.output)
    print(f"wrote {args.output}: {len(text.encode('utf-8'))} bytes, {text.count(chr(10))} lines "
          f"(from CPython {sys.version.split()[0]} pydoc_data.topics)")


if __name__ == "__main__":
    main()
