"""The model thread: started with process signals blocked.

Python runs signal handlers in the main thread only. Threads inherit the signal mask of the
thread that starts them, so blocking SIGINT and SIGTERM here keeps them off the model thread
and the native worker team it spawns: Ctrl-C in ``chatbot chat`` and SIGTERM in ``chatbot
serve`` are taken by the main thread, which then asks the model thread to stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

_BLOCKED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1}


def start_model_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread that runs ``target`` with process signals blocked."""

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
