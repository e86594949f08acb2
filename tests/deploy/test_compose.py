"""deploy/docker-compose*.yml parsed with PyYAML and checked against the code (not run here)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chatbot.config import EngineKind
from tests.deploy.code_facts import (
    DEPLOY,
    REPO,
    check_command,
    check_env,
    check_path,
    default_backend_port,
    default_ui_port,
    flag_value,
)

CHATBOT_SERVICES = ("backend1", "backend2", "ui")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of ``-f a -f b`` for the keys used here: maps merge, the rest replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load("docker-compose.yml")


@pytest.fixture(scope="module")
def with_vllm(compose: dict[str, Any]) -> dict[str, Any]:
    return merged(compose, load("docker-compose.vllm.yml"))


def test_the_services_of_the_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "backend1", "backend2", "nginx", "ui"} <= set(services)
    assert "healthcheck" in services["postgres"]


def test_chatbot_commands_and_env_exist_in_the_code(compose: dict[str, Any]) -> None:
    for name in CHATBOT_SERVICES:
        service = compose["services"][name]
        args = check_command(service["command"], f"compose {name}")
        check_env(service.get("environment") or {}, f"compose {name}")
        expected = "ui" if name == "ui" else "serve"
        assert args.command == expected


def test_backends_share_postgres_and_listen_where_nginx_looks(compose: dict[str, Any]) -> None:
    from tests.deploy.nginx_config import NGINX_CONF, upstream_servers

    wanted = set(upstream_servers(NGINX_CONF.read_text()))
    for name in ("backend1", "backend2"):
        service = compose["services"][name]
        url = urlsplit(service["environment"]["CHATBOT_DATABASE_URL"])
        assert url.scheme.startswith("postgresql") and url.hostname == "postgres"
        port = int(flag_value(service["command"], "--port") or default_backend_port())
        assert f"{name}:{port}" in wanted
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_ui_talks_to_nginx_and_checks_its_own_health(compose: dict[str, Any]) -> None:
    ui = compose["services"]["ui"]
    backend = urlsplit(flag_value(ui["command"], "--backend") or "")
    assert backend.hostname == "nginx"
    assert f"{backend.port}:{backend.port}" in compose["services"]["nginx"]["ports"]
    port = int(flag_value(ui["command"], "--port") or default_ui_port())
    assert f"{port}:{port}" in ui["ports"]
    health = urlsplit(ui["environment"]["HEALTHCHECK_URL"])
    assert health.port == port
    check_path(health.path, port, "compose ui HEALTHCHECK_URL")


def test_build_and_mounts_point_at_real_files(compose: dict[str, Any]) -> None:
    build = compose["services"]["backend1"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).is_file()
    for volume in compose["services"]["nginx"]["volumes"]:
        source = volume.split(":")[0]
        assert (DEPLOY / source).is_file(), volume


def test_stop_grace_covers_the_drain(compose: dict[str, Any]) -> None:
    for name in ("backend1", "backend2"):
        service = compose["services"][name]
        grace = float(service["environment"]["CHATBOT_SHUTDOWN_GRACE_S"])
        assert float(service["stop_grace_period"].rstrip("s")) > grace


@pytest.fixture(scope="module")
def with_auth(compose: dict[str, Any]) -> dict[str, Any]:
    return merged(compose, load("docker-compose.auth.yml"))


def test_auth_variant_puts_a_trusted_proxy_in_front_of_the_ui(with_auth: dict[str, Any]) -> None:
    services = with_auth["services"]
    for name in CHATBOT_SERVICES:
        check_env(services[name]["environment"], f"compose+auth {name}")
        check_command(services[name]["command"], f"compose+auth {name}")
    ui = services["ui"]["environment"]
    assert ui["CHATBOT_AUTH"] == "header"
    proxy = services["oauth2-proxy"]
    proxy_address = proxy["networks"]["front"]["ipv4_address"]
    assert ui["CHATBOT_TRUSTED_PROXIES"] == proxy_address  # only the proxy may name a user
    assert "front" in services["ui"]["networks"]
    ui_port = int(flag_value(services["ui"]["command"], "--port") or default_ui_port())
    assert f"--upstream=http://ui:{ui_port}" in proxy["command"]
    # the UI names its user on the backends with the service key they all share
    keys = {services[name]["environment"]["CHATBOT_SERVICE_KEY"] for name in CHATBOT_SERVICES}
    assert len(keys) == 1
    for name in ("backend1", "backend2"):
        env = services[name]["environment"]
        assert "CHATBOT_DATABASE_URL" in env and "CHATBOT_API_KEY" in env


def test_vllm_variant_points_the_backends_at_vllm(with_vllm: dict[str, Any]) -> None:
    services = with_vllm["services"]
    vllm = services["vllm"]
    vllm_port = int(vllm["command"][vllm["command"].index("--port") + 1])
    assert "nvidia" in str(vllm["deploy"])
    for name in ("backend1", "backend2"):
        env = services[name]["environment"]
        check_env(env, f"compose+vllm {name}")
        assert EngineKind(env["CHATBOT_ENGINE"]) is EngineKind.OPENAI
        upstream = urlsplit(env["CHATBOT_OPENAI_BASE_URL"])
        assert (upstream.hostname, upstream.port, upstream.path) == ("vllm", vllm_port, "/v1")
        assert services[name]["depends_on"]["vllm"]["condition"] == "service_healthy"
        assert "CHATBOT_DATABASE_URL" in env  # replaced wholesale by the override: kept
        check_command(services[name]["command"], f"compose+vllm {name}")
