"""The README's main job: netpol-guard in front of a real local control plane, told as a short story.

    python tests/e2e/demo.py [--keep]

Starts etcd + kube-apiserver + kube-controller-manager on loopback (binaries built
from Go modules and cached), installs netpol-guard from manifests/ with the webhook
process running locally, then replays with kubectl: a Pod refused in an open
namespace, the fix, the same Pod admitted, a NetworkPolicy that re-opens everything
refused, a namespace rolled out in audit mode (admitted, with warnings), the last
deny-all protected, and a namespace deletion that completes. `--keep` leaves it all
running and prints the KUBECONFIG export so you can try your own manifests.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_binaries import ensure_binaries
from controlplane import ControlPlane
from harness import AUDIT_LABEL, E2E_CONFIG, Webhook, install_base, register

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")

POD = """apiVersion: v1
kind: Pod
metadata: {name: web, namespace: NS, labels: {app: web}}
spec:
  containers: [{name: web, image: nginx}]
"""
DENY_ALL = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-all, namespace: NS}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"""
TOO_OPEN = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-everything, namespace: NS}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress: [{}]
  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]
"""


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def run(cp: ControlPlane, *args: str, manifest: str | None = None, expect: int = 0) -> None:
    shown = "kubectl " + " ".join(shlex.quote(a) for a in args)
    if manifest is not None:
        shown += f" <<EOF\n{DIM}{manifest.rstrip()}{RESET}\nEOF"
    print(f"$ {shown}")
    result = cp.kubectl(*args, input=manifest)
    for line in (result.stdout + result.stderr).rstrip().splitlines():
        print(f"  {line}")
    print(f"  {DIM}(exit {result.returncode}){RESET}")
    if result.returncode != expect:
        raise SystemExit(f"demo: expected exit {expect} from `{shown.splitlines()[0]}`, got {result.returncode}")


def story(cp: ControlPlane) -> None:
    ns = "shop"
    step("A namespace with no NetworkPolicy: every pod could reach every other. The Pod is refused.")
    run(cp, "create", "namespace", ns)
    run(cp, "apply", "-f", "-", manifest=POD.replace("NS", ns), expect=1)

    step("The fix the message gives: a default-deny for both directions. Then the same Pod is admitted.")
    run(cp, "apply", "-f", "-", manifest=DENY_ALL.replace("NS", ns))
    run(cp, "apply", "-f", "-", manifest=POD.replace("NS", ns))

    step("An allow policy that quietly re-opens everything is refused, with a reason per rule.")
    run(cp, "apply", "-f", "-", manifest=TOO_OPEN.replace("NS", ns), expect=1)

    step("Deleting the namespace's only deny-all is refused.")
    run(cp, "delete", "networkpolicy", "default-deny-all", "-n", ns, expect=1)

    step(f"Rolling out gently: a namespace labelled {AUDIT_LABEL}=audit admits, and kubectl shows warnings.")
    run(cp, "create", "namespace", "legacy")
    run(cp, "label", "namespace", "legacy", f"{AUDIT_LABEL}=audit")
    run(cp, "apply", "-f", "-", manifest=POD.replace("NS", "legacy"))

    step("That label decides the mode, so only admins may change it.")
    run(
        cp, "label", "namespace", "legacy", f"{AUDIT_LABEL}-", "--as=alice", "--as-group=system:authenticated", expect=1
    )

    step("Deleting a namespace still works: its deny-all may go when the namespace itself goes.")
    run(cp, "delete", "namespace", ns, "--timeout=90s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="leave the control plane and webhook running")
    args = parser.parse_args()
    print("Building or reusing kube-apiserver, kube-controller-manager, etcd and kubectl ...")
    bin_dir = ensure_binaries()
    work = Path(tempfile.mkdtemp(prefix="netpol-guard-demo-"))
    started = time.monotonic()
    try:
        with ControlPlane(work_dir=work / "cluster", bin_dir=bin_dir, keep_work_dir=True) as cp:
            print(f"Control plane up in {time.monotonic() - started:.1f}s at {cp.server}")
            install_base(cp)
            _let_alice_label_namespaces(cp)
            webhook = Webhook(cp, work / "webhook", E2E_CONFIG)
            webhook.start()
            try:
                register(cp, webhook)
                print(f"netpol-guard serving on {webhook.url} (config: {webhook.config_path}, "
                      f"log: {webhook.log_path})")
                story(cp)
                print(f"\n{BOLD}Demo complete.{RESET}")
                if args.keep:
                    _wait_for_interrupt(cp, webhook)
            finally:
                webhook.stop()
        print("Stopped netpol-guard, kube-controller-manager, kube-apiserver and etcd.")
    finally:
        if args.keep:
            print(f"Run directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _let_alice_label_namespaces(cp: ControlPlane) -> None:
    """RBAC lets alice label namespaces, so the only thing stopping her is netpol-guard."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "demo-labeller"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "patch", "update"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "demo-labeller"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "demo-labeller"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        },
    ]
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=True)


def _wait_for_interrupt(cp: ControlPlane, webhook: Webhook) -> None:
    print(
        f"\nLeft running. In another shell:\n  export KUBECONFIG={cp.kubeconfig}\n"
        f"  export PATH={cp.bin_dir}:$PATH\n  kubectl apply -f your-manifests/\n"
        f"netpol-guard log: {webhook.log_path}\nPress Ctrl-C to stop."
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()


if __name__ == "__main__":
    sys.exit(main())
