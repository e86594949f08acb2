"""A one-line spinner for the terminal while something slow happens (the model loading).

Drawn only on a terminal: a pipe or a log file gets one plain line instead of frames.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
FRAME_S = 0.1


class Spinner:
    """``with Spinner("Loading the model", sys.stderr):`` draws ``⠋ Loading the model… 3 s``."""

    def __init__(self, text: str, out: TextIO, *, animate: bool | None = None) -> None:
        self._text = text
        self._out = out
        self._animate = out.isatty() if animate is None else animate
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="spinner", daemon=True)
        self._started = 0.0

    def __enter__(self) -> Spinner:
        self._started = time.monotonic()
        if self._animate:
            self._thread.start()
        else:
            self._out.write(f"{self._text}…\n")
            self._out.flush()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._animate:
            self._thread.join()
            self._out.write("\r\033[K")  # the line is cleared: the chat starts clean
            self._out.flush()

    def _spin(self) -> None:
        frame = 0
        while not self._done.wait(FRAME_S):
            elapsed = int(time.monotonic() - self._started)
            self._out.write(f"\r{FRAMES[frame % len(FRAMES)]} {self._text}… {elapsed} s")
            self._out.flush()
            frame += 1
