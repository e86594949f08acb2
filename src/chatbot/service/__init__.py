"""The one application layer: the contract the UI and the API call, and its two transports.

- :mod:`~chatbot.service.protocol`: the contract (``ChatServiceProtocol``);
- :mod:`~chatbot.service.local`: the service itself (conversations + engine + store);
- :mod:`~chatbot.service.http`: the same contract over HTTP, for the UI in microservices;
- :mod:`~chatbot.service.runner`: one reply from admission to its stored end;
- :mod:`~chatbot.service.admission`: concurrency places, a bounded queue, 429 beyond.
"""
