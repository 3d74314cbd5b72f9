"""Fixes for Backtrader 1.9.78 on current Python (see shared notes: backtrader-compat).

Scoped as narrowly as possible: nothing outside Backtrader's own modules changes.
"""

from __future__ import annotations

import collections
import collections.abc
import types


def apply_backtrader_fixes() -> None:
    """``bindlines()`` uses ``collections.Iterable`` (gone since Python 3.10): give
    ``backtrader.lineiterator`` a ``collections`` that has it, without touching the real module."""
    import backtrader.lineiterator as lineiterator

    current = getattr(lineiterator, "collections", None)
    if current is not None and hasattr(current, "Iterable"):
        return
    shim = types.ModuleType("collections")
    shim.__dict__.update(collections.__dict__)
    shim.Iterable = collections.abc.Iterable
    lineiterator.collections = shim
