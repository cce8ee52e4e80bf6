"""tqdm progress bars on stderr, handed to library code as plain `progress(done, total)` callbacks.

The library reports long work through callbacks (docs/architecture.md §7); the command line turns them into bars.
A bar appears only once the work has taken longer than `delay` seconds, so quick commands stay quiet.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

ProgressCallback = Callable[..., None]


@contextmanager
def progress_bar(
    desc: str,
    *,
    total: int | None = None,
    unit: str = "rows",
    unit_scale: bool = True,
    enabled: bool = True,
    delay: float = 0.5,
) -> Iterator[ProgressCallback]:
    """Yield a callback `progress(done, total=None, message=None)` that drives one bar on stderr.

    `done` is the absolute count so far (as `decompose` reports it); `total` may arrive with the first
    call; a string `message` (or a string alone, `progress("stage")`) becomes the bar's description.
    Rates read e.g. "12.3k rows/s".
    """
    interactive = sys.stderr.isatty()
    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,  # 1.28M rows read better as '1.28M'; 3 of 4 steps as '3/4'
        dynamic_ncols=True,
        file=sys.stderr,
        delay=delay,
        disable=not enabled,
        mininterval=0.25 if interactive else 5.0,  # a log file gets a line every few seconds, not a flood
        leave=True,
    )

    def update(done: int | str | None, total: int | None = None, message: str | None = None) -> None:
        if isinstance(done, str):  # a stage name alone, e.g. progress("training the teacher")
            done, message = None, done
        if total is not None and bar.total != total:
            bar.total = total
        if message:
            bar.set_description_str(f"{desc}: {message}", refresh=False)
        if done is not None:
            bar.update(done - bar.n)
        elif message:
            bar.refresh()

    try:
        yield update
    finally:
        bar.close()
