"""One progress display for the whole run: done/total, edits per second, ETA, failures."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total: int | None, quiet: bool = False):
        # quiet: nothing until the summary (for logs); disable=None also hides it when stderr is no terminal
        self.bar = None if quiet else tqdm(total=total, unit="edit", dynamic_ncols=True, file=sys.stderr,
                                           desc="editing", smoothing=0.1, disable=None)

    def total(self, total: int) -> None:
        """The total once known (a run counts its plan beside the stream)."""
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def update(self, failed: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(failed=failed, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
