"""One-command install with self-managed certificates, on a fresh real control plane.

`kubectl apply -k` of the shipped enforce overlay (only the webhooks' clientConfig is
pointed at local replicas, see incluster.local_overlay), then two replicas running
`serve` with the in-cluster environment emulated. Checked: within 30 s the webhook
configuration holds a caBundle, is armed (failurePolicy Fail) and a Pod in an open
namespace is refused; meanwhile no write to a covered namespace was ever refused;
the two replicas made exactly one CA and serve the same certificate; the
ServiceAccount can do exactly what the minimal roles say; a re-apply never blanks
the caBundle; and serving-certificate and CA rotations under load lose no request.
"""

from __future__ import annotations

import base64
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from build_binaries import find_binaries
from controlplane import ControlPlane
from cryptography import x509
from incluster import Balancer, Replica, local_overlay, shipped_config
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

SA = "system:serviceaccount:netpol-guard:netpol-guard"
SECRET = "netpol-guard-ca"
# Short lives, so the CA (renewed at two-thirds: ~38 s after it is made) and the serving certificate
# (every ~14 s) rotate while the tests run.
LIFETIMES = {"certValidity": 20, "caValidity": 60, "caPropagation": 3, "syncSeconds": 1}

pytestmark = pytest.mark.timeout(600)


def pod(namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}


@dataclass
class Outcomes:
    """Dry-run Pod creates through the API server: what came back."""

    allowed: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)  # anything else: a blocked or failed request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, api: client.CoreV1Api, namespace: str, expect_refusal: bool) -> None:
        try:
            api.create_namespaced_pod(namespace, pod(namespace, "probe"), dry_run="All", _request_timeout=15)
        except ApiException as error:
            body = str(error.body)
            with self.lock:
                if expect_refusal and error.status == 403 and "deny-all-coverage" in body:
                    self.refused += 1
                else:
                    self.failures.append(f"{time.strftime('%X')} {namespace}: HTTP {error.status} {body[:300]}")
            return
        with self.lock:
            if expect_refusal:
                self.failures.append(f"{time.strftime('%X')} {namespace}: allowed, expected a refusal")
            else:
                self.allowed += 1


class Load:
    """Threads creating Pods (dry-run) in a covered and, optionally, an open namespace, until stopped."""

    def __init__(self, kubeconfig: Path, namespaces: list[tuple[str, bool]], threads: int = 2,
                 pause: float = 0.0) -> None:
        self.pause = pause
        self.api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        self.outcomes = Outcomes()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(namespaces,), daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, namespaces: list[tuple[str, bool]]) -> None:
        while not self._stop.wait(self.pause):
            for namespace, refused in namespaces:
                self.outcomes.record(self.api, namespace, refused)

    def stop(self) -> Outcomes:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.outcomes


_CLIENTS: dict[Path, Any] = {}


def api_client(cp: ControlPlane) -> Any:
    """An admin client, kept per control plane (cheaper than a kubectl process on a busy machine)."""
    if cp.kubeconfig not in _CLIENTS:
        _CLIENTS[cp.kubeconfig] = config.new_client_from_config(str(cp.kubeconfig))
    return _CLIENTS[cp.kubeconfig]


def webhook_configuration(cp: ControlPlane) -> dict[str, Any]:
    api = client.AdmissionregistrationV1Api(api_client(cp))
    obj: dict[str, Any] = api_client(cp).sanitize_for_serialization(
        api.read_validating_webhook_configuration("netpol-guard"))
    return obj


def bundle_of(configuration: dict[str, Any]) -> list[list[x509.Certificate]]:
    return [x509.load_pem_x509_certificates(base64.b64decode(w["clientConfig"]["caBundle"]))
            if w["clientConfig"].get("caBundle") else [] for w in configuration["webhooks"]]


def armed(configuration: dict[str, Any]) -> bool:
    return all(w["clientConfig"].get("caBundle") and w["failurePolicy"] == "Fail" for w in configuration["webhooks"])


def secret_data(cp: ControlPlane) -> dict[str, bytes]:
    secret = client.CoreV1Api(api_client(cp)).read_namespaced_secret(SECRET, "netpol-guard")
    return {key: base64.b64decode(value) for key, value in secret.data.items()}


def chains(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except Exception:
            continue
        return True
    return False


def cpu_starvation() -> float:
    """Wall time over CPU time of a Python start like a replica's: 1 on an idle machine, more when shared.

    The 30 s budget is for a machine with CPU to spare; on a busy one (CI shares two cores) the same
    work takes longer in wall time, so the budget is scaled by this factor, capped at 4.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import webhook.server.run, webhook.certmanager, kubernetes.client"],
                   check=True, cwd=Path(__file__).resolve().parents[2])
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return max(1.0, wall / max(cpu, 0.05))


@dataclass
class Install:
    cp: ControlPlane
    replicas: list[Replica]
    overlay_dir: Path
    url: str
    armed_after: float
    refused_after: float
    during_install: Outcomes
    budget: float  # 30 s, scaled by the CPU starvation measured at the start


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    bin_dir = find_binaries()
    if bin_dir is None:
        pytest.fail("control-plane binaries are not built; run `make binaries` first", pytrace=False)
    work = tmp_path_factory.mktemp("install")
    balancer = Balancer()
    replicas: list[Replica] = []
    with ControlPlane(bin_dir=bin_dir) as cp:
        try:
            cp.kubectl("create", "namespace", "covered", check=True)
            cp.kubectl("create", "namespace", "open", check=True)
            cp.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny", "namespace": "covered"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}))
            # A steady writer (about 5 a second, so it does not starve the replicas of CPU) into a namespace
            # that has coverage: not one of its writes may be refused or fail at any point of the install.
            load = Load(cp.kubeconfig, [("covered", False)], threads=1, pause=0.2)

            overlay_dir = local_overlay(cp, work / "overlay", "enforce", balancer.url)
            # What the pods will read: the overlay's ConfigMap, with short lives and a SAN for loopback.
            settings = shipped_config(cp, "enforce")
            settings["server"]["selfSigned"].update({**LIFETIMES, "hosts": ["127.0.0.1"]})
            settings["server"]["certReloadSeconds"] = 0.5
            starvation = min(cpu_starvation(), 4.0)
            started = time.monotonic()
            cp.kubectl("apply", "-k", str(overlay_dir), check=True)  # the one command
            _wait_for_service_account(cp)
            replicas = [Replica(cp, work / f"replica-{index}", settings) for index in range(2)]
            phases = [f"apply+tokens {time.monotonic() - started:.1f}s"]
            for replica in replicas:  # both at once: they race to create the Secret
                replica.start()
            balancer.candidates = [replica.port for replica in replicas]  # served once ready, like endpoints
            for replica in replicas:
                replica.wait_ready()
            phases.append(f"replicas ready {time.monotonic() - started:.1f}s")

            armed_after = refused_after = float("inf")
            probe = client.CoreV1Api(api_client(cp))
            # Until both happen: the webhooks ship with failurePolicy Ignore and the replicas arm them (Fail)
            # once the caBundle has propagated and they are synced, so on a quiet machine the first refusal
            # (made while still Ignore) can come before the arming.
            while time.monotonic() - started < 30 * starvation + 10 and float("inf") in (armed_after, refused_after):
                if armed_after == float("inf") and armed(webhook_configuration(cp)):
                    armed_after = time.monotonic() - started
                if refused_after == float("inf"):
                    outcome = Outcomes()
                    outcome.record(probe, "open", expect_refusal=True)
                    if outcome.refused:
                        refused_after = time.monotonic() - started
                time.sleep(0.3)
            if armed_after == float("inf") and armed(webhook_configuration(cp)):
                armed_after = time.monotonic() - started
            during = load.stop()
            print(f"\ninstall: {', '.join(phases)}; CPU starvation x{starvation:.1f}, budget {30 * starvation:.0f}s")
            yield Install(cp, replicas, overlay_dir, balancer.url, armed_after, refused_after, during,
                          30 * starvation)
        finally:
            for replica in replicas:
                replica.stop()
            balancer.close()


def _wait_for_service_account(cp: ControlPlane, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cp.kubectl("-n", "netpol-guard", "get", "serviceaccount", "netpol-guard").returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the netpol-guard ServiceAccount did not appear")


def test_one_command_install_is_armed_and_refuses_within_30_seconds(install: Install) -> None:
    print(f"\narmed after {install.armed_after:.1f}s, open namespace refused after {install.refused_after:.1f}s, "
          f"{install.during_install.allowed} covered-namespace writes allowed during the install, "
          f"{len(install.during_install.failures)} refused or failed")
    assert install.armed_after <= install.budget, "\n".join(r.log_tail() for r in install.replicas)
    assert install.refused_after <= install.budget
    configuration = webhook_configuration(install.cp)
    webhooks = configuration["webhooks"]
    assert len(webhooks) == 3
    assert [w["failurePolicy"] for w in webhooks] == ["Fail"] * len(webhooks)
    assert [w["clientConfig"]["url"] for w in webhooks] == [f"{install.url}/validate"] * len(webhooks)


def test_nothing_blocked_a_covered_namespace_during_the_install(install: Install) -> None:
    outcomes = install.during_install
    assert outcomes.failures == []
    assert outcomes.allowed >= 30  # the writer really ran through the whole install


def test_two_replicas_made_exactly_one_ca_and_serve_the_same_certificate(install: Install) -> None:
    # Both started at once and raced to create the Secret: exactly one made a CA, the other read it.
    made = [replica for replica in install.replicas if "no certificates yet" in replica.log_path.read_text()]
    assert len(made) == 1
    secret = yaml.safe_load(install.cp.kubectl("-n", "netpol-guard", "get", "secret", SECRET, "-o", "yaml",
                                               check=True).stdout)
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "netpol-guard"
    deadline = time.monotonic() + 10  # a rotation may be under way: both converge within a sync or two
    while True:
        bundle = x509.load_pem_x509_certificates(secret_data(install.cp)["ca-bundle.crt"])
        served = [replica.served_certificate() for replica in install.replicas]
        same = len({cert.serial_number for cert in served}) == 1
        published = all(patched == bundle for patched in bundle_of(webhook_configuration(install.cp)))
        if (same and published) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert same and published
    assert all(chains(cert, bundle) for cert in served)


@pytest.mark.parametrize(("verb", "resource", "namespace", "allowed"), [
    ("get", f"secrets/{SECRET}", "netpol-guard", True),
    ("update", f"secrets/{SECRET}", "netpol-guard", True),
    ("create", "secrets", "netpol-guard", True),
    ("get", "secrets/other", "netpol-guard", False),
    ("update", "secrets/other", "netpol-guard", False),
    ("list", "secrets", "netpol-guard", False),
    ("watch", "secrets", "netpol-guard", False),
    ("delete", f"secrets/{SECRET}", "netpol-guard", False),
    ("patch", f"secrets/{SECRET}", "netpol-guard", False),
    ("create", "secrets", "default", False),
    ("get", f"secrets/{SECRET}", "default", False),
    ("get", "validatingwebhookconfigurations/netpol-guard", None, True),
    ("patch", "validatingwebhookconfigurations/netpol-guard", None, True),
    ("update", "validatingwebhookconfigurations/netpol-guard", None, False),
    ("delete", "validatingwebhookconfigurations/netpol-guard", None, False),
    ("patch", "validatingwebhookconfigurations/other", None, False),
    ("list", "validatingwebhookconfigurations", None, False),
    ("create", "validatingwebhookconfigurations", None, False),
    ("patch", "mutatingwebhookconfigurations/netpol-guard", None, False),
    ("list", "namespaces", None, True),
    ("watch", "networkpolicies", "default", True),
    ("create", "networkpolicies", "default", False),
])
def test_service_account_can_do_exactly_what_the_roles_say(install: Install, verb: str, resource: str,
                                                           namespace: str | None, allowed: bool) -> None:
    args = ["auth", "can-i", verb, resource, "--as", SA]
    args += ["-n", namespace] if namespace else []
    proc = install.cp.kubectl(*args)
    assert proc.stdout.strip() == ("yes" if allowed else "no"), (args, proc.stdout, proc.stderr)


def test_reapplying_the_overlay_keeps_the_ca_bundle_and_rearms(install: Install) -> None:
    install.cp.kubectl("apply", "-k", str(install.overlay_dir), check=True)
    served = install.replicas[0].served_certificate()
    # The manifests have no caBundle field, so apply leaves the patched one alone (it only resets
    # failurePolicy to Ignore, the safe direction, until the next sync re-arms).
    assert all(chains(served, bundle) for bundle in bundle_of(webhook_configuration(install.cp)))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not armed(webhook_configuration(install.cp)):
        time.sleep(0.3)
    assert armed(webhook_configuration(install.cp))


def test_rotation_under_load_loses_no_request(install: Install) -> None:
    cp = install.cp
    first_ca = x509.load_pem_x509_certificate(secret_data(cp)["ca.crt"])
    load = Load(cp.kubeconfig, [("covered", False), ("open", True)], threads=3)
    serials: set[int] = set()
    most_cas_in_bundle = 0
    served_by_new_ca = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            for replica in install.replicas:
                serials.add(replica.served_certificate().serial_number)
            bundles = bundle_of(webhook_configuration(cp))
            most_cas_in_bundle = max(most_cas_in_bundle, *(len(bundle) for bundle in bundles))
            current = x509.load_pem_x509_certificate(secret_data(cp)["ca.crt"])
            if current != first_ca and all(chains(replica.served_certificate(), [current])
                                           for replica in install.replicas):
                served_by_new_ca = True
                time.sleep(3)  # and a little more load after the switch
                break
            time.sleep(0.5)
    finally:
        outcomes = load.stop()
    print(f"\nrotation under load: {len(serials)} serving certificates, up to {most_cas_in_bundle} CAs in the "
          f"caBundle, {outcomes.allowed} allowed + {outcomes.refused} refused, {len(outcomes.failures)} failed")
    assert served_by_new_ca, "the CA did not rotate:\n" + "\n".join(r.log_tail() for r in install.replicas)
    assert most_cas_in_bundle == 2  # old and new CA both trusted during the switch
    assert len(serials) >= 3  # the serving certificate rotated more than once
    assert outcomes.failures == []
    assert outcomes.allowed >= 50 and outcomes.refused >= 50
