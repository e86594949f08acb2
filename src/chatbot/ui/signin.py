"""The pages around the chat when users sign in: sign-in, sign-in failed, and the account box.

A page that is not signed in shows only its title, what is wrong, what to fix, and one button;
never the conversations and never a traceback. The reasons a sign-in fails come from
:mod:`chatbot.ui.identity` (read here) and :mod:`chatbot.ui.signin_routes` (the provider's
answer, as ``?signin_error=``).
"""

from __future__ import annotations

import logging

import streamlit as st
from streamlit.errors import StreamlitAPIException

from chatbot.ui import banners, state
from chatbot.ui.identity import Account, NoAccount
from chatbot.ui.signin_routes import ERROR_PARAM, EXCHANGE_FAILED, PROVIDER_UNREACHABLE
from chatbot.ui.text import safe_label

logger = logging.getLogger(__name__)

SIGN_IN_KEY = "chatbot.sign_in"
SIGN_OUT_KEY = "chatbot.sign_out"
TITLE = "ChatBot"

_FAILURES = {
    PROVIDER_UNREACHABLE: (
        "The sign-in provider could not be reached.",
        "Check that server_metadata_url in the [auth] section of the UI's secrets.toml is the "
        "provider's discovery document (…/.well-known/openid-configuration) and that the UI "
        "server can reach it.",
    ),
    EXCHANGE_FAILED: (
        "The sign-in could not be completed.",
        "The provider did not accept this app's sign-in. Check client_id and client_secret in "
        "the [auth] section of the UI's secrets.toml, and that redirect_uri (ending in "
        "/oauth2callback) is registered with the provider. Then sign in again.",
    ),
    "access_denied": (
        "The sign-in was refused.",
        "The provider answered access_denied: sign in again and allow this app, or ask your "
        "administrator for access.",
    ),
}


def failure() -> tuple[str, str] | None:
    """What the provider's answer says, when the last sign-in failed (``?signin_error=``)."""
    reason = st.query_params.get(ERROR_PARAM)
    if not reason:
        return None
    return _FAILURES.get(
        reason,
        (
            "The sign-in failed.",
            f"The provider answered {reason}. Sign in again; if it fails again, check the "
            "[auth] section of the UI's secrets.toml and the provider's settings for this app.",
        ),
    )


def render_no_account(problem: NoAccount) -> None:
    """The whole page when nobody is signed in."""
    st.set_page_config(page_title=TITLE, page_icon="💬", layout="centered")
    st.title(TITLE)
    banners.show_flashes()
    failed = failure()
    if failed is not None:
        _failed_page(*failed, can_retry=True)
    elif problem.reason == "sign_in":
        st.info("Sign in to see your conversations.", icon="🔒")
        st.button(
            "Sign in", key=SIGN_IN_KEY, type="primary", icon=":material/login:", on_click=_sign_in
        )
    elif problem.reason == "not_configured":
        _failed_page("Sign-in is not configured.", problem.detail, can_retry=False)
    elif problem.reason == "no_header":
        _failed_page("Sign-in required.", problem.detail, can_retry=False)
    else:
        _failed_page("The sign-in failed.", problem.detail, can_retry=True)


def _failed_page(what: str, fix: str, *, can_retry: bool) -> None:
    st.error(what, icon="⚠️")
    st.markdown(fix)
    if can_retry:
        st.button(
            "Sign in again",
            key=SIGN_IN_KEY,
            type="primary",
            icon=":material/login:",
            on_click=_sign_in,
        )


def _sign_in() -> None:
    st.query_params.pop(ERROR_PARAM, None)
    try:
        st.login()
    except StreamlitAPIException as exc:  # StreamlitAuthError: the secrets are incomplete
        logger.warning("sign-in is misconfigured: %s", exc)
        state.flash(state.Banner("error", f"Sign-in is misconfigured: {exc}"))


def render_account(account: Account) -> None:
    """The sidebar's account box: who is signed in, and a sign-out where this app owns it."""
    with st.sidebar:
        st.caption(f"Signed in as **{safe_label(account.user.name)}**")
        if account.can_sign_out:
            st.button(
                "Sign out",
                key=SIGN_OUT_KEY,
                icon=":material/logout:",
                type="tertiary",
                on_click=sign_out,
            )


def sign_out() -> None:
    """Forget every conversation this session remembers, then Streamlit's sign-out."""
    state.forget_user()
    st.logout()
