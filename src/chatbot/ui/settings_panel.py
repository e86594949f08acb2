"""Per-conversation settings: system prompt, temperature, maximum reply length."""

from __future__ import annotations

import streamlit as st
from pydantic import ValidationError

from chatbot.domain import Conversation, GenerationParams
from chatbot.errors import ChatbotError
from chatbot.service.protocol import ChatServiceProtocol
from chatbot.ui import banners, state


def render(service: ChatServiceProtocol, conversation: Conversation) -> None:
    cid = conversation.id or ""
    cap = service.limits().max_tokens_cap  # the server's, never a constant of the UI
    with st.expander("Settings", icon=":material/tune:"), st.form(f"chatbot.settings.{cid}"):
        st.text_area(
            "System prompt",
            value=conversation.system_prompt or "",
            key=f"chatbot.system.{cid}",
            placeholder="e.g. You are a concise assistant.",
            max_chars=service.limits().max_system_prompt_chars,
            help="Instructions the model sees before every message of this conversation.",
        )
        st.slider(
            "Temperature",
            min_value=0.0,
            max_value=2.0,
            step=0.1,
            value=float(conversation.params.temperature),
            key=f"chatbot.temperature.{cid}",
            help="0 always picks the likeliest word; higher is more varied.",
        )
        st.number_input(
            "Maximum reply length (tokens)",
            min_value=1,
            max_value=cap,
            value=min(conversation.params.max_new_tokens, cap),
            step=16,
            key=f"chatbot.max_tokens.{cid}",
        )
        st.form_submit_button("Save settings", on_click=_save, args=(service, conversation))


def _save(service: ChatServiceProtocol, conversation: Conversation) -> None:
    cid = conversation.id or ""
    try:
        params = GenerationParams.model_validate(
            {
                **conversation.params.model_dump(),
                "temperature": float(st.session_state[f"chatbot.temperature.{cid}"]),
                "max_new_tokens": int(st.session_state[f"chatbot.max_tokens.{cid}"]),
            }
        )
    except ValidationError as exc:
        state.flash(state.Banner("warning", f"Settings not saved: {exc.errors()[0]['msg']}"))
        return
    system_prompt = str(st.session_state.get(f"chatbot.system.{cid}") or "").strip()
    try:
        service.update_conversation(cid, system_prompt=system_prompt, params=params)
    except ChatbotError as exc:
        state.flash(banners.describe(exc))
        return
    state.flash(state.Banner("success", "Settings saved.", "✅"))
