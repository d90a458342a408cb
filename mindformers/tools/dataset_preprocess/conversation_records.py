"""Instruction data on disk -> conversations as [(speaker, text), ...] (speaker 0: user, 1: assistant).

Accepted records (a .json list of objects or a .jsonl file of objects):
  ShareGPT / alpaca_converter output   {"conversations": [{"from": "human", "value": ...},
                                                          {"from": "gpt", "value": ...}, ...]}
                                       (a leading {"from": "system"} turn sets the system message)
  alpaca                               {"instruction": ..., "input": ..., "output": ...}
A file that is not JSON (or not a list / objects per line) is a DataError; a record that cannot be used
raises UnusableRecord, which the caller counts and reports.
"""
import json
import os

from mindformers.tools.errors import DataError

USER_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant", "chatgpt", "bard", "bing", "model")
SYSTEM_ROLES = ("system",)


class UnusableRecord(Exception):
    """A record that is skipped; str(error) is the reason, used as the counting key."""


def alpaca_prompt(instruction, context):
    """The user turn of an alpaca row: the instruction, then its input (if any) after a blank line."""
    return f"{instruction}\n\n{context}" if context else instruction


def alpaca_to_conversation(record):
    instruction, context, output = (record.get(key, "") for key in ("instruction", "input", "output"))
    if not all(isinstance(value, str) for value in (instruction, context, output)):
        raise UnusableRecord("alpaca field that is not a string")
    if not instruction.strip() or not output.strip():
        raise UnusableRecord("empty instruction or output")
    return [{"from": "human", "value": alpaca_prompt(instruction, context)}, {"from": "gpt", "value": output}]


def normalize(record):
    """(system message or None, [(speaker, text), ...]) of one record; turns must alternate user/assistant."""
    if not isinstance(record, dict):
        raise UnusableRecord("record that is not a JSON object")
    turns = record.get("conversations")
    if turns is None and "instruction" in record:
        turns = alpaca_to_conversation(record)
    if not isinstance(turns, list) or not turns:
        raise UnusableRecord("no conversations list")
    system, messages = None, []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise UnusableRecord("turn without a string 'value'")
        role = str(turn.get("from", "")).lower()
        if role in SYSTEM_ROLES and index == 0:
            system = turn["value"]
            continue
        if role in USER_ROLES:
            speaker = 0
        elif role in ASSISTANT_ROLES:
            speaker = 1
        else:
            raise UnusableRecord("unknown speaker role")
        if not messages and speaker == 1:
            continue  # ShareGPT dumps sometimes open with the bot's greeting: there is nothing to answer
        if speaker != len(messages) % 2:
            raise UnusableRecord("turns do not alternate user/assistant")
        messages.append((speaker, turn["value"]))
    if len(messages) < 2:
        raise UnusableRecord("no assistant reply")
    if len(messages) % 2:
        messages.pop()  # a trailing unanswered question teaches nothing
    return system, messages


def load_json_records(path):
    """Every record of a .json list or a .jsonl file; the file as a whole must parse."""
    try:
        with open(path, encoding="utf-8") as stream:
            if path.lower().endswith(".jsonl"):
                records = []
                for number, line in enumerate(stream, start=1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as error:
                            raise DataError(f"{path}:{number}: not a valid JSON line ({error.msg})") from None
                return records
            records = json.load(stream)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of conversation records, got {type(records).__name__}")
    return records


def iter_records(paths, advance=lambda nbytes: None):
    """Yield (where, record) for every record of every file, reporting file sizes to `advance`."""
    for path in paths:
        records = load_json_records(path)
        for index, record in enumerate(records):
            yield f"{path}: item {index}", record
        advance(os.path.getsize(path))
