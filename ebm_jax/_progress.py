"""The optional tqdm progress bar shared by run_chains and fit."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(progress: bool | None, total: int, *, desc: str, initial: int = 0) -> Any:
    """A tqdm bar, or ``None`` when disabled or tqdm is not installed.

    ``progress=None`` shows a bar only when stderr is a terminal.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the progress bar is optional
        return None
    return tqdm(total=total, initial=initial, unit="step", desc=desc, dynamic_ncols=True)
