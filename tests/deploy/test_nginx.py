"""deploy/nginx.conf: nginx's own parser accepts it (``nginx -t``), and it fits the backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.code_facts import DEPLOY, default_backend_port, default_request_timeout_s
from tests.deploy.nginx_config import (
    NGINX_CONF,
    check_config,
    nginx_binary,
    render,
    upstream_servers,
)

TEXT = NGINX_CONF.read_text()


def directive(name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{name}\s+([^;]*);", TEXT, re.M)]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    assert match, value
    factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]
    return int(match.group(1)) * factor


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (make system-deps installs nginx-light)")
    config = render(18080, ["127.0.0.1:18001", "127.0.0.1:18002"], tmp_path)
    result = check_config(binary, config)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_streaming_directives() -> None:
    assert directive("proxy_buffering") == ["off"]
    assert directive("proxy_cache") == ["off"]
    assert directive("proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directive("proxy_set_header")  # keepalive to the upstream
    assert directive("gzip") == ["off"]


def test_timeouts_fit_the_longest_reply() -> None:
    read = seconds(directive("proxy_read_timeout")[0])
    assert read >= default_request_timeout_s()
    assert seconds(directive("proxy_send_timeout")[0]) >= default_request_timeout_s()


def test_two_backends_on_the_default_port_with_keepalive() -> None:
    servers = upstream_servers(TEXT)
    assert len(servers) == 2
    assert {int(s.rsplit(":", 1)[1]) for s in servers} == {default_backend_port()}
    assert directive("keepalive") and int(directive("keepalive")[0]) > 0


def test_a_post_that_reached_a_backend_is_never_retried() -> None:
    next_upstream = directive("proxy_next_upstream")
    assert next_upstream and "non_idempotent" not in next_upstream[0]


def test_compose_uses_these_backend_names_and_port() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    hosts = {s.rsplit(":", 1)[0] for s in upstream_servers(TEXT)}
    assert hosts <= set(compose["services"])
    listen = int(directive("listen")[0])
    assert f"{listen}:{listen}" in compose["services"]["nginx"]["ports"]
