"""The Helm chart (charts/netpol-guard): helm lint, helm template, and no drift from the kustomize manifests.

helm is built from its Go module (tests/tools/build_helm.py) and kubectl comes from the control-plane
build, both cached; the first run may compile them.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.core.config import config_from_data

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "netpol-guard"
NAMESPACE = "netpol-guard"
HELM_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version",
               "helm.sh/chart")

pytestmark = pytest.mark.timeout(3600)  # a cold helm or kubectl build

Obj = dict[str, Any]


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    override = os.environ.get("NETPOL_GUARD_HELM")
    if override:
        return Path(override)
    build = _load(REPO / "tests" / "tools" / "build_helm.py", "netpol_guard_build_helm")
    try:
        return Path(build.ensure_helm())
    except build.BuildError as error:
        if error.exit_code == 2:
            pytest.skip(f"cannot get helm: {error}")
        raise


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    override = os.environ.get("NETPOL_GUARD_KUBECTL")
    if override:
        return Path(override)
    build = _load(REPO / "tests" / "e2e" / "build_binaries.py", "netpol_guard_build_binaries_chart")
    try:
        return Path(build.ensure_binaries(quiet=True)) / "kubectl"
    except build.BuildError as error:
        if error.exit_code == 2:
            pytest.skip(f"cannot get kubectl: {error}")
        raise


def helm(helm_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": "/nonexistent-unused", "HELM_CONFIG_HOME": "/nonexistent-unused",
           "HELM_DATA_HOME": "/nonexistent-unused"}
    return subprocess.run([str(helm_bin), *args], capture_output=True, text=True, timeout=120, check=False, env=env)


def template(helm_bin: Path, *values: str) -> list[Obj]:
    args = ["template", "netpol-guard", str(CHART), "--namespace", NAMESPACE]
    for value in values:
        args += ["--set", value]
    proc = helm(helm_bin, *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def kustomize(kubectl_bin: Path, directory: Path) -> list[Obj]:
    proc = subprocess.run([str(kubectl_bin), "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def with_component(tmp_path: Path, overlay: str, component: str) -> Path:
    base = os.path.relpath(REPO / "manifests" / "overlays" / overlay, tmp_path)
    path = os.path.relpath(REPO / "manifests" / "components" / component, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [base], "components": [path]}))
    return tmp_path


def normalised(objs: list[Obj]) -> dict[tuple[str, str], Obj]:
    """Comparable form: without Helm's own labels and the config checksum; config.yaml parsed."""
    result: dict[tuple[str, str], Obj] = {}
    for original in objs:
        obj = copy.deepcopy(original)
        if obj["kind"] == "Namespace":
            continue  # Helm installs into a namespace made with --create-namespace
        labels = obj["metadata"].get("labels", {})
        for key in HELM_LABELS:
            labels.pop(key, None)
        if obj["kind"] == "Deployment":
            annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
            annotations.pop("checksum/config", None)
            if not annotations:
                obj["spec"]["template"]["metadata"].pop("annotations", None)
        if obj["kind"] == "ConfigMap":
            obj["data"]["config.yaml"] = yaml.safe_load(obj["data"]["config.yaml"])
        result[(obj["kind"], obj["metadata"]["name"])] = obj
    return result


def effective(objs: dict[tuple[str, str], Obj]) -> dict[tuple[str, str], Obj]:
    """The config as serve sees it: --certificates=, --generate and --audit-background win over the file."""
    args = objs[("Deployment", "netpol-guard")]["spec"]["template"]["spec"]["containers"][0]["args"]
    config = objs[("ConfigMap", "netpol-guard-config")]["data"]["config.yaml"]
    for arg in args:
        if arg.startswith("--certificates="):
            config["server"]["certificates"] = arg.split("=", 1)[1]
        elif arg == "--generate":
            config.setdefault("generate", {})["enabled"] = True
        elif arg == "--audit-background":
            config.setdefault("audit", {})["background"] = True
    return objs


def assert_same(chart: list[Obj], manifests: list[Obj]) -> None:
    left, right = effective(normalised(chart)), effective(normalised(manifests))
    assert sorted(left) == sorted(right)
    for key in sorted(left):
        assert left[key] == right[key], f"{key} differs between the chart and kustomize"


def test_helm_lint_is_clean(helm_bin: Path) -> None:
    proc = helm(helm_bin, "lint", "--strict", str(CHART), "--namespace", NAMESPACE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_default_render_is_the_enforce_overlay(helm_bin: Path, kubectl_bin: Path) -> None:
    assert_same(template(helm_bin), kustomize(kubectl_bin, REPO / "manifests" / "overlays" / "enforce"))


def test_audit_mode_is_the_audit_overlay(helm_bin: Path, kubectl_bin: Path) -> None:
    assert_same(template(helm_bin, "mode=audit"), kustomize(kubectl_bin, REPO / "manifests" / "overlays" / "audit"))


def test_cert_manager_mode_is_the_overlay_with_the_component(helm_bin: Path, kubectl_bin: Path,
                                                             tmp_path: Path) -> None:
    chart = template(helm_bin, "certificates.mode=cert-manager")
    assert_same(chart, kustomize(kubectl_bin, with_component(tmp_path, "enforce", "cert-manager")))


def test_pod_coverage_is_the_overlay_with_the_pod_coverage_component(helm_bin: Path, kubectl_bin: Path,
                                                                    tmp_path: Path) -> None:
    chart = template(helm_bin, "coverage=pod")
    assert_same(chart, kustomize(kubectl_bin, with_component(tmp_path, "enforce", "pod-coverage")))


def test_generate_is_the_overlay_with_the_generate_component(helm_bin: Path, kubectl_bin: Path,
                                                            tmp_path: Path) -> None:
    chart = template(helm_bin, "generate.enabled=true")
    assert_same(chart, kustomize(kubectl_bin, with_component(tmp_path, "enforce", "generate")))
    (deployment,) = [obj for obj in chart if obj["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--generate"


def test_reports_is_the_overlay_with_the_reports_component_but_its_crds(helm_bin: Path, kubectl_bin: Path,
                                                                        tmp_path: Path) -> None:
    chart = template(helm_bin, "reports.enabled=true")
    manifests = kustomize(kubectl_bin, with_component(tmp_path, "enforce", "reports"))
    crds = [obj for obj in manifests if obj["kind"] == "CustomResourceDefinition"]
    # Applied from manifests/components/reports/crds (README, chart NOTES): Helm never upgrades crds/.
    assert sorted(crd["metadata"]["name"] for crd in crds) == ["clusterreports.openreports.io",
                                                                "reports.openreports.io"]
    assert_same(chart, [obj for obj in manifests if obj["kind"] != "CustomResourceDefinition"])
    (deployment,) = [obj for obj in chart if obj["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-1] == "--audit-background"
    assert (container["resources"]["requests"]["memory"], container["resources"]["limits"]["memory"]) == \
        ("320Mi", "768Mi")


def test_vap_is_the_overlay_with_the_vap_component(helm_bin: Path, kubectl_bin: Path, tmp_path: Path) -> None:
    chart = template(helm_bin, "vap.enabled=true")
    assert_same(chart, kustomize(kubectl_bin, with_component(tmp_path, "enforce", "vap")))
    assert len([obj for obj in chart if obj["kind"] == "ValidatingAdmissionPolicy"]) >= 7


def test_all_components_together_are_the_overlay_with_all_components(helm_bin: Path, kubectl_bin: Path,
                                                                    tmp_path: Path) -> None:
    chart = template(helm_bin, "generate.enabled=true", "reports.enabled=true", "vap.enabled=true",
                     "certificates.mode=cert-manager")
    components = [os.path.relpath(REPO / "manifests" / "components" / name, tmp_path)
                  for name in ("cert-manager", "generate", "reports", "vap")]
    base = os.path.relpath(REPO / "manifests" / "overlays" / "enforce", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [base], "components": components}))
    manifests = [obj for obj in kustomize(kubectl_bin, tmp_path) if obj["kind"] != "CustomResourceDefinition"]
    assert_same(chart, manifests)


def test_cert_manager_with_your_own_issuer_makes_no_issuer(helm_bin: Path) -> None:
    objs = template(helm_bin, "certificates.mode=cert-manager", "certificates.certManager.issuerRef.kind=ClusterIssuer",
                    "certificates.certManager.issuerRef.name=corp-ca")
    assert [obj for obj in objs if obj["kind"] == "Issuer"] == []
    (certificate,) = [obj for obj in objs if obj["kind"] == "Certificate"]
    assert certificate["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "corp-ca"}


def test_files_mode_uses_your_secret_and_ca_and_sets_the_failure_policy_itself(helm_bin: Path) -> None:
    bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...").decode()
    objs = template(helm_bin, "certificates.mode=files", f"certificates.files.caBundle={bundle}",
                    "certificates.files.secretName=corp-tls")
    kinds = {(obj["kind"], obj["metadata"]["name"]) for obj in objs}
    assert ("Role", "netpol-guard-certificates") not in kinds  # nothing to manage
    assert ("ClusterRole", "netpol-guard-webhook-configurations") not in kinds  # nothing to arm
    (configuration,) = [obj for obj in objs if obj["kind"] == "ValidatingWebhookConfiguration"]
    assert "netpol-guard.io/failure-policy" not in (configuration["metadata"].get("annotations") or {})
    assert [(w["failurePolicy"], w["clientConfig"]["caBundle"]) for w in configuration["webhooks"]] == \
        [("Fail", bundle)] * len(configuration["webhooks"])
    (deployment,) = [obj for obj in objs if obj["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][-1] == "--certificates=files"
    assert {"name": "tls", "secret": {"secretName": "corp-tls", "defaultMode": 0o440}} in pod["volumes"]


@pytest.mark.parametrize(("values", "message"), [
    (["certificates.mode=files"], "certificates.mode files needs certificates.files.caBundle"),
    (["mode=warn"], 'mode must be enforce or audit, not "warn"'),
    (["certificates.mode=vault"], 'certificates.mode must be self-signed, cert-manager or files, not "vault"'),
    (["webhook.failurePolicy=Maybe"], 'webhook.failurePolicy must be Fail, Ignore or empty, not "Maybe"'),
    (["vap.enabled=true", "mode=audit"], "vap.enabled renders the enforce-mode policies"),
    (["vap.enabled=true", "--namespace=security"], 'exempt the namespace netpol-guard, not "security"'),
])
def test_bad_values_fail_with_a_message(helm_bin: Path, values: list[str], message: str) -> None:
    args = ["template", "netpol-guard", str(CHART), "--namespace", NAMESPACE]
    for value in values:
        args += [value] if value.startswith("--") else ["--set", value]  # a later --namespace wins
    proc = helm(helm_bin, *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_values_reach_the_config_and_the_workload(helm_bin: Path) -> None:
    objs = template(helm_bin, "replicaCount=5", "resources.requests.cpu=250m", "coverage=pod",
                    "exemptions.namespaces={legacy,lab}", "rules.broad-cidr.minPrefixV4=16",
                    "rules.port-range.action=warn", "failClosed=false", "webhook.failurePolicy=Ignore",
                    "certificates.selfSigned.certValidity=P90D", "podDisruptionBudget.minAvailable=3",
                    "extraConfig.modeOverrides[0].mode=audit",
                    "extraConfig.modeOverrides[0].namespaceSelector.matchLabels.stage=dev")
    by_kind = {obj["kind"]: obj for obj in objs}
    deployment = by_kind["Deployment"]
    assert deployment["spec"]["replicas"] == 5
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "250m"
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] == 3
    config = config_from_data(yaml.safe_load(by_kind["ConfigMap"]["data"]["config.yaml"]), "chart config")
    assert config.coverage == "pod" and config.fail_closed is False
    assert config.exemptions.namespaces == ["legacy", "lab"]
    assert config.rules.broad_cidr.min_prefix_v4 == 16
    assert config.rules.get("port-range").action == "warn"
    assert config.server.self_signed.cert_validity.days == 90
    assert config.mode_overrides[0].mode == "audit"
    annotations = by_kind["ValidatingWebhookConfiguration"]["metadata"]["annotations"]
    assert annotations["netpol-guard.io/failure-policy"] == "Ignore"


def test_another_release_namespace_is_exempt_and_never_sent(helm_bin: Path) -> None:
    proc = helm(helm_bin, "template", "guard", str(CHART), "--namespace", "security")
    assert proc.returncode == 0, proc.stderr
    objs = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    by_kind = {obj["kind"]: obj for obj in objs}
    config = config_from_data(yaml.safe_load(by_kind["ConfigMap"]["data"]["config.yaml"]), "chart config")
    assert config.namespace == "security" and "security" in config.exempt_namespace_names()
    for webhook in by_kind["ValidatingWebhookConfiguration"]["webhooks"]:
        assert webhook["clientConfig"]["service"]["namespace"] == "security"
        if webhook["name"] == "coverage-sources.netpol-guard.io":
            continue  # cluster-scoped kinds only: no namespace to exclude
        selector = webhook.get("namespaceSelector") or webhook["objectSelector"]
        assert "security" in selector["matchExpressions"][0]["values"]
    assert all(obj["metadata"].get("namespace", "security") == "security" for obj in objs)
