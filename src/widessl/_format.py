"""How numbers are shown in tables (CLI summaries and Markdown reports)."""

from __future__ import annotations

from typing import Any


def format_value(v: Any) -> str:
    """None -> 'n/a', bools -> yes/no, ints as they are, floats to 4 significant digits."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}"
