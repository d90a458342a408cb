"""What one config value may be: its kind (integer, number, true/false, string, list, mapping), its range and its
choices, and the one-line error when it is something else.

The fixed sections of a config declare their keys in config_schema.py; registered classes declare the ranges of
their arguments when they register (`MindFormerRegister.register(..., value_specs={...})`), and an argument they
leave undeclared is held to the kind of its default (see registry.argument_specs). Nothing is replaced: a value
out of range stops the run before anything is built.
"""
import math

from mindformers.tools.errors import ConfigError

INT, FLOAT, BOOL, STR, LIST, DICT, ANY = "int", "float", "bool", "str", "list", "dict", "any"

_PYTHON_TYPES = {INT: int, FLOAT: (int, float), BOOL: bool, STR: str, LIST: (list, tuple), DICT: dict}
_WORDS = {INT: "an integer", FLOAT: "a number", BOOL: "true/false", STR: "a string", LIST: "a list",
          DICT: "a mapping", ANY: "any value"}
_PLURAL = {INT: "integers", FLOAT: "numbers", BOOL: "true/false values", STR: "strings", LIST: "lists",
           DICT: "mappings", ANY: "values"}


def is_kind(value, kind):
    """`value` is of `kind` as YAML writes it: true/false is not a number, an integer is a number."""
    if kind == ANY:
        return True
    if kind in (INT, FLOAT) and isinstance(value, bool):
        return False
    if kind == FLOAT and isinstance(value, float) and not math.isfinite(value):
        return False  # .nan / .inf are never a usable setting
    return isinstance(value, _PYTHON_TYPES[kind])


def _number(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


class Value:
    """A config value's kinds and limits.

    min/max are inclusive bounds, above/below exclusive ones; `choices` lists the allowed values; `also` maps
    extra values outside the range to their meaning (e.g. {-1: "the whole run"}); `items` is the Value of every
    element of a list and `length` its length; `nullable` says whether null (YAML `~`) may be given.
    """

    def __init__(self, *kinds, min=None, max=None, above=None, below=None, choices=None,  # noqa: A002
                 also=None, items=None, length=None, nullable=True):
        self.kinds = kinds or (ANY,)
        self.min, self.max, self.above, self.below = min, max, above, below
        self.choices = tuple(choices) if choices is not None else None
        self.also = dict(also or {})
        self.items = items
        self.length = length
        self.nullable = nullable

    def ok(self, value):
        if value is None:
            return self.nullable
        if any(value == extra and type(value) is type(extra) for extra in self.also):
            return True
        if not any(is_kind(value, kind) for kind in self.kinds):
            return False
        if self.choices is not None and value not in self.choices:
            return False
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not self._in_range(value):
            return False
        if isinstance(value, (list, tuple)):
            if self.length is not None and len(value) != self.length:
                return False
            if self.items is not None and not all(self.items.ok(item) for item in value):
                return False
        return True

    def _in_range(self, value):
        return ((self.min is None or value >= self.min) and (self.max is None or value <= self.max)
                and (self.above is None or value > self.above) and (self.below is None or value < self.below))

    def _range_words(self):
        lower = f">= {_number(self.min)}" if self.min is not None else \
            f"> {_number(self.above)}" if self.above is not None else None
        upper = f"<= {_number(self.max)}" if self.max is not None else \
            f"< {_number(self.below)}" if self.below is not None else None
        return " and ".join(part for part in (lower, upper) if part)

    def describe(self, plural=False):
        if self.choices is not None:
            text = "one of " + ", ".join(repr(choice) for choice in self.choices)
        else:
            words = _PLURAL if plural else _WORDS
            limits = self._range_words()
            text = " or ".join(words[kind] + (f" {limits}" if limits and kind in (INT, FLOAT) else "")
                               for kind in self.kinds)
            if self.length is not None or self.items is not None:
                count = f"{self.length} " if self.length is not None else ""
                inner = self.items.describe(plural=True) if self.items is not None else "values"
                text = f"a list of {count}{inner}"
        extras = "; ".join(f"{extra!r}: {meaning}" for extra, meaning in self.also.items())
        if extras:
            text += f" (or {extras})"
        return text

    def check(self, value, key_path, where):
        if not self.ok(value):
            place = f"{where}: " if where else ""
            raise ConfigError(f"{place}{key_path}: expected {self.describe()}, got {value!r}")


def as_value(expected):
    """A schema entry (a kind name, a tuple of them, or a Value) as a Value."""
    if isinstance(expected, Value):
        return expected
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return Value(*kinds)


def is_plain(value):
    """A value a YAML file or a flag can hold; objects handed over by the trainer (cells, schedules) are not."""
    if isinstance(value, (list, tuple)):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(is_plain(item) for item in value.values())
    return value is None or isinstance(value, (bool, int, float, str))


# The ranges most arguments need, named once.
POSITIVE_INT = Value(INT, min=1, nullable=False)
NON_NEGATIVE_INT = Value(INT, min=0, nullable=False)
NON_NEGATIVE_NUMBER = Value(FLOAT, min=0, nullable=False)
POSITIVE_NUMBER = Value(FLOAT, above=0, nullable=False)
FRACTION = Value(FLOAT, min=0, max=1)
SEED = Value(INT, min=0, max=2**32 - 1)  # numpy's and MindSpore's seeds are unsigned 32-bit
