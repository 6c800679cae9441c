"""A small cluster for the coverage page: covered, half-covered, open and exempt namespaces.

`python -m tests.browser.sample docs/coverage.png` re-renders the README's screenshot.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

from webhook.audit import AuditRun, audit_run
from webhook.core.config import Config, config_from_data
from webhook.report_html import render_html

NOW = datetime.datetime(2026, 11, 22, 21, 0, tzinfo=datetime.UTC)


def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": f"uid-{name}"}}


def _policy(name: str, namespace: str, types: list[str], **rules: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": types, **rules}}


def _deployment(name: str, namespace: str, host_network: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def sample_objects() -> dict[str, list[dict[str, Any]]]:
    return {
        "Namespace": [_ns(n) for n in ("shop", "payments", "legacy", "half", "kube-system")],
        "NetworkPolicy": [
            _policy("default-deny-all", "shop", ["Ingress", "Egress"]),
            _policy("deny-ingress", "payments", ["Ingress"]),
            _policy("deny-egress", "payments", ["Egress"]),
            _policy("to-internet", "payments", ["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]),
            _policy("deny-ingress", "half", ["Ingress"]),
            _policy("from-anywhere", "half", ["Ingress"], ingress=[{}]),
        ],
        "Deployment": [_deployment("web", "shop"), _deployment("api", "payments"), _deployment("cron", "legacy"),
                       _deployment("old-web", "legacy"), _deployment("agent", "half", host_network=True),
                       _deployment("coredns", "kube-system")],
    }


def sample_run(config: Config | None = None) -> AuditRun:
    return audit_run(config or config_from_data({}), sample_objects())


def sample_page() -> str:
    config = config_from_data({})
    return render_html(sample_run(config), config, now=NOW)


if __name__ == "__main__":  # python -m tests.browser.sample docs/coverage.png
    from tests.browser.chromium import screenshot

    out = Path(sys.argv[1])
    page = out.with_suffix(".html")
    page.write_text(sample_page())
    screenshot(page, out)
    page.unlink()
    print(f"wrote {out}")
