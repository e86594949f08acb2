"""deploy/k8s/*.yaml parsed with PyYAML and checked against the code (no cluster here)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.code_facts import (
    DEPLOY,
    check_command,
    check_env,
    check_path,
    default_backend_port,
    default_shutdown_grace_s,
    default_ui_port,
    flag_value,
)

K8S = DEPLOY / "k8s"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
                docs.append(doc)
    return docs


DOCS = documents()


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} named {name}"
    return found[0]


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for deployment in of_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_backend_and_ui_deployments_with_services() -> None:
    for name in ("chatbot-backend", "chatbot-ui"):
        deployment = named("Deployment", name)
        service = named("Service", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {
            p["name"]
            for c in deployment["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


@pytest.mark.parametrize(("deployment", "container"), list(containers()))
def test_commands_env_and_ports_match_the_code(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    where = f"k8s {deployment['metadata']['name']}"
    args = check_command(container["args"], where)
    check_env(plain_env(container), where)
    for item in container.get("env", []):
        assert item["name"].startswith("CHATBOT_") or item["name"] == "HEALTHCHECK_URL"
    check_env({e["name"]: "x" for e in container["env"] if "valueFrom" in e}, where)
    default = default_ui_port() if args.command == "ui" else default_backend_port()
    port = int(flag_value(container["args"], "--port") or default)
    assert port == default and container["ports"][0]["containerPort"] == port
    assert flag_value(container["args"], "--host") == "0.0.0.0"


def test_backend_probes_use_the_real_routes() -> None:
    container = named("Deployment", "chatbot-backend")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        check_path(container[probe]["httpGet"]["path"], default_backend_port(), probe)


def test_ui_probes_use_streamlit_health() -> None:
    container = named("Deployment", "chatbot-ui")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        check_path(container[probe]["httpGet"]["path"], default_ui_port(), probe)
    backend = flag_value(container["args"], "--backend") or ""
    service = named("Service", "chatbot-backend")
    assert backend == f"http://chatbot-backend:{service['spec']['ports'][0]['port']}"


def test_termination_grace_covers_the_drain() -> None:
    pod = named("Deployment", "chatbot-backend")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    grace = float(plain_env(container).get("CHATBOT_SHUTDOWN_GRACE_S", default_shutdown_grace_s()))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(command[1]) if command[0] == "sleep" else 0.0
    assert pod["terminationGracePeriodSeconds"] >= grace + pause + 5


def test_database_url_comes_from_the_secret() -> None:
    secret = named("Secret", "chatbot-secrets")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    refs = [
        (d["metadata"]["name"], e)
        for d, c in containers()
        for e in c.get("env", [])
        if "valueFrom" in e
    ]
    assert any(e["name"] == "CHATBOT_DATABASE_URL" for _, e in refs)
    for _, item in refs:
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "chatbot-secrets" and ref["key"] in keys


def test_autoscaler_targets_the_backend_with_cpu_requests() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    deployment = named(target["kind"], target["name"])
    assert deployment["metadata"]["name"] == "chatbot-backend"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "cpu" in container["resources"]["requests"]  # utilization needs a request
