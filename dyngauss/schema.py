"""Value constraints of config fields, written next to each field with :data:`typing.Annotated`::

    iters: Annotated[int, Range(ge=1)] = 5000                        # closed bound: iters >= 1
    near: Annotated[float, Range(gt=0)] = 0.01                       # open bound: near > 0
    background: Annotated[list[float], Length(3), Range(ge=0, le=1)] = ...   # Range/OneOf apply to each item
    backend: Annotated[str, OneOf("auto", "cpu", "torch", "gsplat")] = "auto"
    device: Annotated[str, Pattern(r"auto|cpu|cuda(:\\d+)?", "auto | cpu | cuda | cuda:N")] = "auto"
    path: Annotated[str, FreeText("a dataset folder")] = ""         # an open set of values, said so on purpose

A rule between fields of one section (or, on the root Config, between sections) is a :class:`Rule` in the
class attribute ``RULES: ClassVar[tuple[Rule, ...]]``. Numbers must also be finite (no NaN or infinity).

The markers only describe and judge single values; :func:`dyngauss.config.validate_config` walks a config, reads
the values and raises ``ConfigError`` naming the key, the value and the allowed range. This module imports
nothing from dyngauss, so every config module (dyngauss/config.py, deform/config.py, losses/motion_config.py)
can use it without import cycles.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Range", "OneOf", "Pattern", "Length", "FreeText", "Rule"]


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return f"{v:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Range:
    """A numeric interval: `ge`/`gt` the lower bound (closed/open), `le`/`lt` the upper one; a missing side is
    unbounded. `hint` is added to the error (e.g. "colours are fractions, not 0-255")."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    hint: str = ""

    def __post_init__(self) -> None:
        if self.ge is not None and self.gt is not None or self.le is not None and self.lt is not None:
            raise TypeError("Range takes one lower bound (ge or gt) and one upper bound (le or lt)")
        if self.ge is None and self.gt is None and self.le is None and self.lt is None:
            raise TypeError("Range needs at least one bound")

    def describe(self) -> str:
        """Interval notation, e.g. ``[1, inf)``, ``(0, 1]``."""
        lo = f"[{_num(self.ge)}" if self.ge is not None else (f"({_num(self.gt)}" if self.gt is not None else "(-inf")
        hi = f"{_num(self.le)}]" if self.le is not None else (f"{_num(self.lt)})" if self.lt is not None else "inf)")
        return f"{lo}, {hi}"

    def contains(self, value: float) -> bool:
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed (text naming the range), or None when it is."""
        hint = f" ({self.hint})" if self.hint else ""
        if not _is_number(value):
            return f"must be a number in {self.describe()}{hint}"
        if not math.isfinite(value):
            return f"must be a finite number in {self.describe()}{hint}"
        return None if self.contains(value) else f"must be in {self.describe()}{hint}"


@dataclass(frozen=True, init=False)
class OneOf:
    """A closed set of string values."""

    choices: tuple[str, ...]

    def __init__(self, *choices: str) -> None:
        if not choices:
            raise TypeError("OneOf needs at least one choice")
        object.__setattr__(self, "choices", tuple(choices))

    def describe(self) -> str:
        return " | ".join(self.choices)

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else f"must be one of {self.describe()}"


@dataclass(frozen=True)
class Pattern:
    """Strings matching `regex` in full (a closed set written as a pattern); `text` says it to a person."""

    regex: str
    text: str

    def describe(self) -> str:
        return self.text

    def problem(self, value: Any) -> str | None:
        ok = isinstance(value, str) and re.fullmatch(self.regex, value) is not None
        return None if ok else f"must be {self.text}"


@dataclass(frozen=True)
class Length:
    """A list of exactly `n` values."""

    n: int

    def describe(self) -> str:
        return f"{self.n} values"

    def problem(self, value: Any) -> str | None:
        n = len(value) if isinstance(value, (list, tuple)) else None
        return None if n == self.n else f"must be a list of {self.n} values, got {n if n is not None else value!r}"


@dataclass(frozen=True)
class FreeText:
    """A string field whose values form an open set (paths, split names): declared so on purpose, with `what` it
    holds, so that the schema test can tell it from a closed-set field that forgot its choices."""

    what: str

    def describe(self) -> str:
        return self.what

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, str) else f"must be a string ({self.what})"


_OPS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                               ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


@dataclass(frozen=True)
class Rule:
    """A relation between two fields: ``left op right`` where `right` is another key or a constant, checked only
    when `when` = (key, op, constant) holds (None: always). Keys are relative to the class that lists the rule
    (dotted from the root for rules of the root Config). `why` is added to the error (what to do instead)."""

    left: str
    op: str
    right: str | float
    when: tuple[str, str, Any] | None = None
    why: str = ""
    keys: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        for op in (self.op, self.when[1] if self.when else "=="):
            if op not in _OPS:
                raise TypeError(f"unknown operator {op!r}; use {', '.join(_OPS)}")
        keys = (self.left,) + ((self.right,) if isinstance(self.right, str) else ()) \
            + ((self.when[0],) if self.when else ())
        object.__setattr__(self, "keys", keys)

    def problem(self, value_of: Callable[[str], Any], prefix: str = "") -> str | None:
        """The violation message, or None when the rule holds (or does not apply). `value_of(key)` reads a
        key's value; `prefix` is prepended to the keys in the message."""
        if self.when is not None:
            key, op, const = self.when
            if not _OPS[op](value_of(key), const):
                return None
        left = value_of(self.left)
        right = value_of(self.right) if isinstance(self.right, str) else self.right
        if _OPS[self.op](left, right):
            return None
        rhs = f"{prefix}{self.right}={right!r}" if isinstance(self.right, str) else repr(right)
        why = f" ({self.why})" if self.why else ""
        return f"{prefix}{self.left}={left!r} must be {self.op} {rhs}{why}"
