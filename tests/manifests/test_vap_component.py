"""manifests/components/vap is exactly what `netpol-guard vap` renders from the shipped default config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from webhook.core.config import Config
from webhook.loading import load_config
from webhook.vap import generate

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "manifests" / "components" / "vap"
CHART_COPY = REPO / "charts" / "netpol-guard" / "files" / "vap-policies.yaml"  # a chart reads only its own files


def test_committed_policies_equal_vap_output_for_the_base_config() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "webhook", "vap", "--config", str(REPO / "manifests" / "base" / "config.yaml")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    committed = (COMPONENT / "policies.yaml").read_text()
    assert committed == proc.stdout, "manifests/components/vap/policies.yaml is stale: run `make vap`"
    assert CHART_COPY.read_text() == proc.stdout, "charts/netpol-guard/files/vap-policies.yaml is stale: run `make vap`"


def test_the_base_config_is_the_default_config_so_the_component_is_the_default_rules() -> None:
    assert load_config(str(REPO / "manifests" / "base" / "config.yaml")) == Config()
    committed = [d for d in yaml.safe_load_all((COMPONENT / "policies.yaml").read_text()) if d]
    assert committed == generate(Config())


def test_component_lists_the_policies() -> None:
    kustomization = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    assert kustomization["resources"] == ["policies.yaml"]
