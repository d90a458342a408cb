"""Reading the final number out of a worked answer (GSM8K): after "The answer is", else the last number."""
import re

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER_IS = re.compile(r"the answer is", re.IGNORECASE)


def parse_number(text):
    """'$1,234.50' -> 1234.5; None when it is not a number."""
    try:
        return float(text.replace("$", "").replace(",", ""))
    except ValueError:
        return None


def extract_number(text):
    """The answer a chain of thought ends with: the first number after the last "the answer is", else the last
    number of the text; None when there is none."""
    markers = list(_ANSWER_IS.finditer(text))
    if markers:
        after = _NUMBER.search(text, markers[-1].end())
        if after:
            return parse_number(after.group())
    numbers = _NUMBER.findall(text)
    return parse_number(numbers[-1]) if numbers else None


def same_number(predicted, gold):
    return predicted is not None and abs(predicted - gold) <= 1e-6 * max(1.0, abs(gold))
