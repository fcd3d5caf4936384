"""Category names as small shared integers: one registry for every district's counts."""

from __future__ import annotations

# Categories are few and shared by every district: each gets a small number once, and a
# day's counts are keyed by one int per (measure, category) instead of a tuple holding a
# string, which halves the memory of a year of daily breakdowns.
_CATEGORY_CODES: dict[str, int] = {}
_CATEGORY_NAMES: list[str] = []


def canonical(category: str) -> str:
    """The one shared copy of a category name (events each bring their own)."""
    code = _CATEGORY_CODES.get(category)
    if code is None:
        code = _CATEGORY_CODES[category] = len(_CATEGORY_NAMES)
        _CATEGORY_NAMES.append(category)
    return _CATEGORY_NAMES[code]


def category_code(category: str) -> int:
    """The small number of a category name, given one at its first sight."""
    code = _CATEGORY_CODES.get(category)
    if code is None:
        canonical(category)
        code = _CATEGORY_CODES[category]
    return code


def category_name(code: int) -> str:
    return _CATEGORY_NAMES[code]


def category_key(measure: int, category: str) -> int:
    return category_code(category) * 32 + measure


def split_category_key(key: int) -> tuple[int, str]:
    return key & 31, _CATEGORY_NAMES[key >> 5]
