"""The seed's "Download conversation" (CSV ``is_user,text``), plus JSON and Markdown."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from chatbot.domain import Conversation, ExportFormat, export


def file_name(fmt: ExportFormat, now: datetime | None = None) -> str:
    """``conversation_YYYYmmddHHMMSS.csv``, the seed's name."""
    stamp = (now or datetime.now()).strftime("%Y%m%d%H%M%S")
    return f"conversation_{stamp}.{fmt.extension}"


def render(conversation: Conversation) -> None:
    st.download_button(
        "💾 Download conversation",
        data=export(conversation, ExportFormat.CSV),
        file_name=file_name(ExportFormat.CSV),
        mime=ExportFormat.CSV.media_type,
        key="chatbot.download.csv",
        on_click="ignore",
        width="stretch",
    )
    json_col, md_col = st.columns(2)
    for column, fmt, label in (
        (json_col, ExportFormat.JSON, "JSON"),
        (md_col, ExportFormat.MARKDOWN, "Markdown"),
    ):
        column.download_button(
            label,
            data=export(conversation, fmt),
            file_name=file_name(fmt),
            mime=fmt.media_type,
            key=f"chatbot.download.{fmt.value}",
            on_click="ignore",
            type="tertiary",
            icon=":material/download:",
            width="stretch",
        )
