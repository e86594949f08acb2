"""Who a backend request acts for: API keys, the service key, OIDC tokens, a proxy's header.

One job per module: :mod:`.headers` reads the request, :mod:`.resolver` applies the rules of
``CHATBOT_AUTH``, :mod:`.oidc` checks tokens, :mod:`.proxies` the trusted peers,
:mod:`.setup` builds it all from the settings, :mod:`.middleware` answers.
"""

from chatbot.api.auth.middleware import AuthMiddleware
from chatbot.api.auth.resolver import Authenticator
from chatbot.api.auth.setup import build_authenticator

__all__ = ["AuthMiddleware", "Authenticator", "build_authenticator"]
