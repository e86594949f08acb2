"""Turn deploy/nginx.conf into a config that runs here: same directives, local ports and paths.

Only what differs between a container and a test run changes: the listen port, the upstream
servers, the pid file and the logs and temporary folders (in a test folder), and ``daemon off``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.deploy.code_facts import DEPLOY

NGINX_CONF = DEPLOY / "nginx.conf"
_UPSTREAM = re.compile(r"(upstream\s+\w+\s*\{)(.*?)(\})", re.DOTALL)
_SERVER_LINE = re.compile(r"^\s*server\s+(\S+)(.*?);\s*$", re.MULTILINE)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


def upstream_servers(text: str) -> list[str]:
    """The ``host:port`` of each server in the upstream block."""
    block = _UPSTREAM.search(text)
    assert block, "deploy/nginx.conf has no upstream block"
    return [m.group(1) for m in _SERVER_LINE.finditer(block.group(2))]


def render(listen_port: int, backends: Sequence[str], folder: Path) -> Path:
    """Write the runnable config into ``folder`` and return its path."""
    text = NGINX_CONF.read_text()
    servers = upstream_servers(text)
    assert len(servers) >= len(backends) >= 1

    def local_servers(block: re.Match[str]) -> str:
        lines = iter(backends)
        body = _SERVER_LINE.sub(
            lambda m: f"        server {next(lines, backends[0])}{m.group(2)};", block.group(2)
        )
        return block.group(1) + body + block.group(3)

    text = _UPSTREAM.sub(local_servers, text, count=1)
    text = re.sub(r"\blisten\s+\d+\s*;", f"listen 127.0.0.1:{listen_port};", text)
    text = re.sub(r"^\s*pid\s+\S+;", f"pid {folder / 'nginx.pid'};", text, flags=re.MULTILINE)
    text = text.replace("/dev/stdout", str(folder / "access.log"))
    text = text.replace("/dev/stderr", str(folder / "error.log"))
    temp = "\n".join(
        f"    {name}_temp_path {folder / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = re.sub(r"(http\s*\{)", lambda m: m.group(1) + "\n" + temp, text, count=1)
    path = folder / "nginx.conf"
    path.write_text("daemon off;\nerror_log " + str(folder / "error.log") + ";\n" + text)
    return path


def check_config(binary: str, config: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t``: the real parser, with every directive checked."""
    return subprocess.run(
        [binary, "-t", "-p", str(config.parent), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
