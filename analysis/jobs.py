"""Long-running work: the progress callback every loop reports to, and the cancel check it makes.

Every long loop (an evaluation, importance, curves, sweeps, the Hessian) takes
`progress(fraction, message)` and a `cancel` threading.Event. The dashboard passes a background
job's `report` and `cancel` (dashboard/widgets.py `Job`); the CLI passes neither.
"""

from __future__ import annotations

import threading
from typing import Callable

from analysis.errors import HeadroomError

#: progress(fraction done in [0, 1], what is being done now); None = nobody is listening
Progress = Callable[[float, str], None] | None


def check_cancel(cancel: threading.Event | None, what: str) -> None:
    """Stop with one sentence ("The <what> was stopped.") once `cancel` is set."""
    if cancel is not None and cancel.is_set():
        raise HeadroomError(f"The {what} was stopped.")


def report(progress: Progress, fraction: float, message: str) -> None:
    """Tell `progress` how far along the work is, the fraction clamped to [0, 1]."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))), message)
