"""Run by test_kill.py in its own process: start a long reply, report, and wait to be killed.

Usage: python -m tests.service.kill_worker DATABASE_URL
Prints the conversation id on the first line once the reply has started.
"""

from __future__ import annotations

import sys
import time

from chatbot.config import EngineSettings, LimitSettings, StoreSettings
from chatbot.domain import GenerationParams
from chatbot.service.portal import PortalChatService
from tests.fixtures.prompts import LONG_PROMPT

PROMPT = LONG_PROMPT


def main(database_url: str) -> None:
    service = PortalChatService.open(
        EngineSettings(model="embedded", batching=False),
        StoreSettings(database_url=database_url),
        LimitSettings(),
    )
    conversation = service.create_conversation(
        params=GenerationParams(max_new_tokens=200, temperature=0.0, ignore_eos=True)
    )
    assert conversation.id is not None
    events = service.send_message(conversation.id, PROMPT)
    print(conversation.id, flush=True)
    for _event in events:
        pass
    time.sleep(3600)  # the test kills us before the reply ends, or fails on its own


if __name__ == "__main__":
    main(sys.argv[1])
