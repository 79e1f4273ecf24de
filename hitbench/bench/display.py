"""Tables as shown in Markdown and the terminal: a rate with its interval as ``0.953 (0.921-0.975)``.

An undefined value reads ``—``; CSV files keep the bounds as columns and NaN instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Columns of tables holding p-values (shown with two significant digits).
P_COLUMNS = ("p", "p (Holm)")


def _cell(value: object, column: str) -> str:
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return "—"
    if isinstance(value, bool | np.bool_ | int | np.integer):
        return str(value)
    return f"{value:.2g}" if column in P_COLUMNS else f"{value:.3f}"


def display(table: pd.DataFrame) -> pd.DataFrame:
    """A table as shown in Markdown and the terminal: text cells, a value with bounds as ``0.953 (0.921-0.975)``.

    Rates read with three decimals and p-values with two significant digits; an undefined value
    (NaN) reads ``—``, and a value whose bounds are undefined is shown alone.

    Parameters
    ----------
    table : pandas.DataFrame
        A table from this module (bounds in ``<column>_lo``/``<column>_hi`` columns).

    Returns
    -------
    pandas.DataFrame
        The same rows, one text column per value column.
    """
    shown = {}
    for column in table.columns:
        if column.endswith(("_lo", "_hi")) and column[:-3] in table.columns:
            continue
        cells = [_cell(v, column) for v in table[column]]
        if f"{column}_lo" in table.columns:
            bounds = zip(table[f"{column}_lo"], table[f"{column}_hi"], strict=True)
            cells = [
                cell if np.isnan(lo) or cell == "—" else f"{cell} ({lo:.3f}-{hi:.3f})"
                for cell, (lo, hi) in zip(cells, bounds, strict=True)
            ]
        shown[column] = cells
    return pd.DataFrame(shown, columns=list(shown))


def markdown(table: pd.DataFrame) -> str:
    """A table as Markdown (the form written to files and docs), cells as :func:`display` writes them."""
    shown = display(table)
    align = ["right" if pd.api.types.is_numeric_dtype(table[column]) else "left" for column in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"
