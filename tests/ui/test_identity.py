"""Who a browser session is, per CHATBOT_AUTH: st.user's claims, the proxy's header, or local."""

from __future__ import annotations

from chatbot.domain.users import LOCAL_USER, oidc_user_id
from chatbot.ui.identity import (
    Account,
    NoAccount,
    from_header,
    from_oidc,
    missing_auth_keys,
)

ISSUER = "http://127.0.0.1:9999"


def test_oidc_user_is_issuer_plus_subject_named_by_name_then_email() -> None:
    account = from_oidc({"is_logged_in": True, "iss": ISSUER, "sub": "alice", "name": "Alice"})
    assert account == Account(
        user=type(LOCAL_USER)(id=oidc_user_id(ISSUER, "alice"), name="Alice"), can_sign_out=True
    )
    named = from_oidc({"is_logged_in": True, "iss": ISSUER, "sub": "b", "email": "b@x.org"})
    assert isinstance(named, Account) and named.user.name == "b@x.org"
    bare = from_oidc({"is_logged_in": True, "iss": ISSUER, "sub": "c"})
    assert isinstance(bare, Account) and bare.user.name == "c"


def test_oidc_not_signed_in_or_without_subject_is_no_account() -> None:
    assert from_oidc({}) == NoAccount("sign_in")
    assert from_oidc({"is_logged_in": False, "email": "x@y"}) == NoAccount("sign_in")
    broken = from_oidc({"is_logged_in": True, "iss": ISSUER})
    assert isinstance(broken, NoAccount) and broken.reason == "bad_identity"
    assert "sub" in broken.detail


def test_header_names_the_user_or_says_which_header_and_setting() -> None:
    account = from_header({"X-Forwarded-Email": " ann@example.com "}, "X-Forwarded-Email")
    assert isinstance(account, Account)
    assert account.user.id == "ann@example.com" and not account.can_sign_out
    missing = from_header({}, "X-Forwarded-Email")
    assert isinstance(missing, NoAccount) and missing.reason == "no_header"
    assert "X-Forwarded-Email" in missing.detail and "CHATBOT_TRUSTED_PROXIES" in missing.detail
    bad = from_header({"X-User": "a\x01b"}, "X-User")
    assert isinstance(bad, NoAccount) and bad.reason == "bad_identity"


def test_missing_auth_keys_names_each_one() -> None:
    assert missing_auth_keys(None) == [
        "redirect_uri",
        "cookie_secret",
        "client_id",
        "client_secret",
        "server_metadata_url",
    ]
    full = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "s" * 32,
        "client_id": "id",
        "client_secret": "secret",
        "server_metadata_url": "https://idp/.well-known/openid-configuration",
    }
    assert missing_auth_keys(full) == []
    assert missing_auth_keys({**full, "client_secret": ""}) == ["client_secret"]
