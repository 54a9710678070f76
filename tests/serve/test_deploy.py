"""The shipped deployment files (deploy/): valid, and the copies in docs/serve.md equal to them.
tests/serve/test_scale_out.py runs the HAProxy file in front of real replicas."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def docs_block(language: str) -> str:
    """The one ```language block of docs/serve.md."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", (REPO / "docs" / "serve.md").read_text(), re.M | re.S)
    assert len(blocks) == 1, f"docs/serve.md: expected one ```{language} block, found {len(blocks)}"
    return blocks[0]


def test_docs_show_the_shipped_files():
    assert docs_block("cfg") == (DEPLOY / "haproxy.cfg").read_text(), "docs/serve.md: the HAProxy file differs"
    assert docs_block("yaml") == (DEPLOY / "kubernetes.yaml").read_text(), "docs/serve.md: the Kubernetes file differs"


def test_haproxy_accepts_the_config():
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy); .ci/run installs it")
    checked = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = (DEPLOY / "haproxy.cfg").read_text()
    for line in ("balance leastconn", "http-check send meth GET uri /readyz", "http-check expect status 200",
                 "timeout tunnel 1h", "retry-on conn-failure empty-response"):
        assert line in text


def test_kubernetes_file_structure():
    """Without a YAML parser: readiness /readyz, liveness /healthz, a grace period above the drain."""
    text = (DEPLOY / "kubernetes.yaml").read_text()
    assert re.search(r"readinessProbe:\n\s+httpGet:\n\s+path: /readyz\n", text)
    assert re.search(r"livenessProbe:\n\s+httpGet:\n\s+path: /healthz\n", text)
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))
    drain = float(re.search(r'"--drain-timeout", "([\d.]+)"', text).group(1))
    assert grace > drain + 5
    assert "preStop:" not in text  # SIGTERM drains


def test_kubernetes_deployment(monkeypatch):
    """Readiness /readyz, liveness /healthz, a grace period longer than the drain, and a command
    that `streamvlm serve` accepts."""
    from streamvlm.cli.commands import serve
    from streamvlm.cli.flags import parse

    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the structure is checked above)")
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    assert set(kinds) == {"Deployment", "Service"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["failureThreshold"] == 1
    command = container["command"]
    assert command[:2] == ["streamvlm", "serve"]
    monkeypatch.setenv("STREAMVLM_API_KEY", "k" * 32)
    options = parse(serve.Options, command[2:], prog="streamvlm serve")
    assert pod["terminationGracePeriodSeconds"] > options.limits.drain_timeout + 5  # + the shutdown itself
    assert options.port == container["ports"][0]["containerPort"] and options.api_key_env == "STREAMVLM_API_KEY"
    assert kinds["Service"]["spec"]["selector"] == kinds["Deployment"]["spec"]["selector"]["matchLabels"]
