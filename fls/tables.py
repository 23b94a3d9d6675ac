"""Rows as text: CSV (for pandas and spreadsheets) and markdown tables (for reports and terminals), one
implementation of each for every table fls writes."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV text with the given columns (extra keys ignored, NaN as an empty cell)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:  # NaN (no value) as an empty cell, which csv readers and pandas read back as missing
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return buffer.getvalue()


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """Rows as a markdown table (no trailing newline): a header of ``columns``, then one line per row, each cell
    as ``str(cell)``. ``align``: one letter a column, ``l`` (the default for columns beyond it) or ``r``
    (right-aligned, for numbers)."""
    rule = "".join("---:|" if align[i : i + 1] == "r" else "---|" for i in range(len(columns)))
    lines = ["| " + " | ".join(columns) + " |", "|" + rule]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
