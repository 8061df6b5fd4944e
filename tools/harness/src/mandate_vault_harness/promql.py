"""A small PromQL helper for the live proof: drop an alert's threshold comparison.

An alert expression such as ``sum(rate(errors_total[5m])) > 10`` is silent on a healthy system,
so evaluating it says nothing about whether its metrics exist. `strip_thresholds` removes the
top-level comparison against a number (``> 10``, ``>= 20``, ``== 0``, ``> bool 0.2``), also in
each top-level branch of ``and``/``or``/``unless`` and inside a branch wrapped in parentheses,
leaving the part that must return data: ``sum(rate(errors_total[5m]))``.

Only what sits at the top level is touched: comparisons inside function calls, aggregations,
label matchers (``status!="VALID"``), strings and range selectors stay as they are.
"""

from __future__ import annotations

import re
from typing import Final

_SET_OPERATORS: Final = ("and", "or", "unless")
_COMPARISONS: Final = ("==", "!=", ">=", "<=", ">", "<")
_OPEN: Final = "([{"
_CLOSE: Final = ")]}"
_NUMBER: Final = re.compile(
    r"\s*(?:bool\s+)?[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|0x[0-9a-fA-F]+|inf|nan)\s*",
    re.IGNORECASE,
)
_MODIFIER: Final = re.compile(
    r"\s*(?:(?:on|ignoring)\s*\([^)]*\)\s*)?(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?",
    re.IGNORECASE,
)
_WORD: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _top_level(expr: str) -> list[tuple[int, str]]:
    """(index, character) pairs of `expr` outside brackets, braces, parentheses and strings."""
    found: list[tuple[int, str]] = []
    depth, quote, index = 0, "", 0
    while index < len(expr):
        char = expr[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif depth == 0:
            found.append((index, char))
        index += 1
    if depth != 0 or quote:
        msg = f"unbalanced PromQL expression: {expr!r}"
        raise ValueError(msg)
    return found


def _split_set_operators(expr: str) -> list[str]:
    """Alternating [branch, operator, branch, ...] split at top-level and/or/unless."""
    positions = {index for index, _ in _top_level(expr)}
    parts: list[str] = []
    start = 0
    for match in _WORD.finditer(expr):
        if match.start() not in positions or match.group(0).lower() not in _SET_OPERATORS:
            continue
        before = expr[match.start() - 1] if match.start() else " "
        if before.isalnum() or before in "_:":
            continue
        modifier = _MODIFIER.match(expr, match.end())
        end = modifier.end() if modifier else match.end()
        parts += [expr[start : match.start()], expr[match.start() : end]]
        start = end
    parts.append(expr[start:])
    return parts


def _wrapped(expr: str) -> bool:
    """True when the whole of `expr` is one parenthesised group: ``(a > 1)``."""
    text = expr.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for index, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and index < len(text) - 1:
            return False
    return True


def _strip_branch(expr: str) -> str:
    text = expr.strip()
    if _wrapped(text):
        return "(" + strip_thresholds(text[1:-1]) + ")"
    top = _top_level(text)
    for position, (index, char) in enumerate(top):
        pair = char + (top[position + 1][1] if position + 1 < len(top) else "")
        operator = next((op for op in _COMPARISONS if pair.startswith(op)), None)
        if operator is None:
            continue
        # `=~`/`!~` only appear inside matchers; a lone `=` or `!` is not a comparison.
        if operator in ("==", "!=", ">=", "<=") and top[position + 1][0] != index + 1:
            continue
        rest = text[index + len(operator) :]
        if _NUMBER.fullmatch(rest):
            return strip_thresholds(text[:index])
    return text


def strip_thresholds(expr: str) -> str:
    """`expr` without its top-level comparisons against numbers (see the module docstring)."""
    parts = _split_set_operators(expr)
    out: list[str] = []
    for index, part in enumerate(parts):
        out.append(_strip_branch(part) if index % 2 == 0 else " " + " ".join(part.split()) + " ")
    return "".join(out).strip()
