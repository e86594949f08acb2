"""A copy control for a whole message, with the copy button Streamlit's code boxes already have.

Named ``copying``, not ``copy``: ``streamlit run`` puts this folder first on ``sys.path``.

Streamlit draws a copy button on every code box (``st.code`` and fenced code in Markdown) and
has no clipboard call of its own; a script of ours would need ``'unsafe-inline'`` in the page's
Content-Security-Policy. So a message's Copy opens a popover that shows its exact text in a code
box, whose copy button copies it, Markdown source included.
"""

from __future__ import annotations

import streamlit as st

COPY_KEY = "chatbot.copy.{}"


def copy_control(text: str, message_id: str) -> None:
    with st.popover(
        "Copy",
        icon=":material/content_copy:",
        type="tertiary",
        help="Show this message's text with a copy button",
        key=COPY_KEY.format(message_id),
    ):
        st.code(text, language=None, wrap_lines=True)
