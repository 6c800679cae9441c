#!/usr/bin/env python3
"""A real, local Kubernetes control plane on loopback for e2e tests.

Runs etcd, kube-apiserver and kube-controller-manager (built from Go modules by
``build_binaries.py``) as child processes, much like controller-runtime's
envtest, but with the controller manager too so that ReplicaSets create Pods,
namespaces actually finish deleting and service accounts get created. There is
no kubelet or scheduler: Pods are created but never run.

Library use::

    with ControlPlane() as cp:
        cp.kubectl("get", "ns", check=True)

CLI::

    python tests/e2e/controlplane.py up [--keep]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import collections
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from build_binaries import ensure_binaries

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # first IP of SERVICE_CIDR: the `kubernetes` Service
SA_ISSUER = "https://kubernetes.default.svc"
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


class ControlPlaneError(RuntimeError):
    """A component failed to start or become ready (message includes its log tail)."""


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class CertPair:
    cert: pathlib.Path
    key: pathlib.Path


class _CA:
    """Minimal CA. ECDSA P-256 keys: instant to generate, accepted everywhere in k8s."""

    def __init__(self, directory: pathlib.Path, name: str = "netpol-guard-e2e-ca") -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.pair = CertPair(directory / "ca.crt", directory / "ca.key")
        _write(self.pair.cert, self.cert.public_bytes(serialization.Encoding.PEM))
        _write(self.pair.key, _key_pem(self.key), private=True)

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> CertPair:
        """Issue a leaf cert; written to ``<dir>/<name>.crt`` and ``<dir>/<name>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=False, key_cert_sign=False,
                    crl_sign=False, content_commitment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )  # fmt: skip
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = CertPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(pair.key, _key_pem(key), private=True)
        return pair


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: pathlib.Path, data: bytes, *, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


# ---------------------------------------------------------------------- helpers


def _free_ports(n: int) -> list[int]:
    """Distinct free loopback ports. Sockets stay open until all are picked so the
    kernel cannot hand out the same port twice (a small race with other programs
    remains, as in envtest)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(collections.deque(f, maxlen=lines))
    except OSError:
        return "<no log>"


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child before exec (Linux only): if the Python process dies
    # without running stop() (e.g. SIGKILL), the kernel kills the child so no
    # orphaned etcd/apiserver outlive the test run. SIGKILL, not SIGTERM: a
    # terminated kube-apiserver whose etcd is going away too can linger in its
    # graceful shutdown for a long time. Note: the signal fires when the
    # *thread* that spawned the child exits, so call start() from a thread
    # that lives as long as the control plane (e.g. the main thread).
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: pathlib.Path
    log_file: IO[bytes]


# ------------------------------------------------------------------ ControlPlane


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1.

    Args:
        work_dir: directory for certs, kubeconfigs, etcd data and logs. Default: a
            new temp dir, removed by :meth:`stop` unless start failed or
            ``keep_work_dir`` is set.
        bin_dir: directory holding the four binaries. Default:
            ``build_binaries.ensure_binaries()`` (builds them on first use).
        start_timeout: seconds allowed for each component to become ready.
        keep_work_dir: never delete ``work_dir``.
        extra_apiserver_args / extra_controller_manager_args: appended flags
            (later flags win, so these can override defaults).

    Attributes (valid after :meth:`start`): ``work_dir``, ``bin_dir``,
    ``kubeconfig`` (admin kubeconfig path), ``server`` (``https://127.0.0.1:<port>``),
    ``ca`` (CA :class:`CertPair`, also usable to sign webhook serving certs via
    :meth:`issue_serving_cert`), ``admin`` (admin client :class:`CertPair`),
    ``etcd_url``, ``log_dir``, ``startup_seconds``.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        bin_dir: str | os.PathLike[str] | None = None,
        *,
        start_timeout: float = 90.0,
        keep_work_dir: bool = False,
        extra_apiserver_args: Sequence[str] = (),
        extra_controller_manager_args: Sequence[str] = (),
    ) -> None:
        self._owns_work_dir = work_dir is None
        self.work_dir = pathlib.Path(
            tempfile.mkdtemp(prefix="netpol-guard-cp-") if work_dir is None else work_dir
        ).resolve()
        self.bin_dir = pathlib.Path(bin_dir).resolve() if bin_dir is not None else None
        self.start_timeout = start_timeout
        self.keep_work_dir = keep_work_dir
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.extra_controller_manager_args = list(extra_controller_manager_args)

        self.pki_dir = self.work_dir / "pki"
        self.log_dir = self.work_dir / "logs"
        self.kubeconfig = self.work_dir / "admin.kubeconfig"
        self.server = ""
        self.etcd_url = ""
        self.startup_seconds: float | None = None
        self._procs: list[_Proc] = []
        self._ca: _CA | None = None
        self._failed = False
        self._atexit_registered = False

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start all components and wait until they are ready. On failure every
        process already started is stopped before the exception propagates."""
        if self._procs:
            raise ControlPlaneError("control plane already started")
        t0 = time.monotonic()
        if not self._atexit_registered:
            atexit.register(self.stop)  # safety net if the caller never stops us
            self._atexit_registered = True
        try:
            if self.bin_dir is None:
                self.bin_dir = ensure_binaries(quiet=True)
            for d in (self.pki_dir, self.log_dir):
                d.mkdir(parents=True, exist_ok=True)
            etcd_client, etcd_peer, api_port, kcm_port = _free_ports(4)
            self._make_pki()
            self._start_etcd(etcd_client, etcd_peer)
            self._start_apiserver(api_port)
            self._start_controller_manager(kcm_port)
        except BaseException:
            self._failed = True  # keep the work dir: its logs explain the failure
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop all processes in reverse start order: SIGTERM, then SIGKILL after
        5 s. Idempotent; safe to call after a failed start."""
        while self._procs:
            proc = self._procs.pop()
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.terminate()
                try:
                    proc.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.popen.kill()
                    proc.popen.wait()
            proc.log_file.close()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if self._owns_work_dir and not self.keep_work_dir and not self._failed:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- public helpers ----------------------------------------------------------

    @property
    def ca(self) -> CertPair:
        assert self._ca is not None, "start() first"
        return self._ca.pair

    @property
    def admin(self) -> CertPair:
        return CertPair(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, the webhook, ...) targeting this
        cluster: KUBECONFIG set, user kubectl config/cache kept out of the way."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.work_dir / "kube-cache")  # not ~/.kube/cache
        env["KUBERC"] = "off"  # ignore the developer's ~/.kube/kuberc preferences
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = False,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as cluster-admin. Text mode; stdout/stderr captured. With
        ``check=True`` a non-zero exit raises CalledProcessError (its stderr is in
        the exception)."""
        assert self.bin_dir is not None, "start() first"
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, input=input, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, output=proc.stdout, stderr=proc.stderr)
        return proc

    def issue_serving_cert(
        self, name: str, dns_names: Sequence[str] = ("localhost",), ips: Sequence[str] = ("127.0.0.1",)
    ) -> CertPair:
        """Issue a serving cert signed by the cluster CA (e.g. for an admission
        webhook on loopback; use ``ca.cert`` as its caBundle)."""
        assert self._ca is not None, "start() first"
        return self._ca.issue(name, dns_names[0] if dns_names else name,
                              dns_names=dns_names, ip_addresses=ips, server=True)  # fmt: skip

    def api_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET ``path`` on the apiserver as admin; returns (status, body)."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return _http_get(self.server + path, ctx, timeout)

    # -- internals ---------------------------------------------------------------

    def _make_pki(self) -> None:
        ca = self._ca = _CA(self.pki_dir)
        ca.issue(
            "apiserver", "kube-apiserver",
            dns_names=APISERVER_DNS_NAMES, ip_addresses=("127.0.0.1", SERVICE_IP), server=True,
        )  # fmt: skip
        ca.issue("admin", "admin", organizations=("system:masters",), client=True)
        ca.issue("kube-controller-manager", "system:kube-controller-manager", client=True)
        # Service-account tokens: the apiserver verifies (public key) and signs
        # (TokenRequest); the controller manager signs legacy tokens. RSA as upstream.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(self.pki_dir / "sa.key", _key_pem(sa_key), private=True)
        _write(
            self.pki_dir / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _write_kubeconfig(self, path: pathlib.Path, user: str, pair: CertPair) -> None:
        # Embedded (-data) so the file is self-contained and can be copied around.
        def b64(p: pathlib.Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "netpol-guard-e2e",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(self.ca.cert)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": b64(pair.cert), "client-key-data": b64(pair.key)},
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": "netpol-guard-e2e", "user": user}}],
            "current-context": user,
        }
        _write(path, yaml.safe_dump(config, sort_keys=False).encode(), private=True)

    def _spawn(self, name: str, args: Sequence[str]) -> _Proc:
        assert self.bin_dir is not None
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - stays open while the process runs
        cmd = [str(self.bin_dir / name), *args]
        log_file.write(f"$ {' '.join(cmd)}\n".encode())
        log_file.flush()
        try:
            popen = subprocess.Popen(
                cmd,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Own session: a terminal Ctrl-C reaches only Python, which then
                # stops the components in order instead of all dying at once.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            log_file.close()
            raise
        proc = _Proc(name, popen, log_path, log_file)
        self._procs.append(proc)
        return proc

    def _wait_ready(self, proc: _Proc, what: str, probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = ""
        while True:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {proc.popen.returncode} before {what}; "
                    f"log {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.start_timeout:.0f}s waiting for {what} "
                    f"(last error: {last_error or 'none'}); log {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            time.sleep(0.2)

    def _start_etcd(self, client_port: int, peer_port: int) -> None:
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        proc = self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # throwaway data: skip fsync, much faster
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            status, body = _http_get(self.etcd_url + "/health", None, 2.0)
            return status == 200 and json.loads(body).get("health") == "true"

        self._wait_ready(proc, "etcd /health", healthy)

    def _start_apiserver(self, port: int) -> None:
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki_dir
        proc = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={pki / 'apiserver-generated'}",  # default is /var/run/kubernetes
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca.cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={SA_ISSUER}",
                # RBAC so `kubectl auth can-i --as=system:serviceaccount:...` is meaningful.
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                *self.extra_apiserver_args,
            ],
        )
        self._write_kubeconfig(self.kubeconfig, "admin", self.admin)

        def ready() -> bool:
            status, _ = self.api_get("/readyz")
            return status == 200

        self._wait_ready(proc, "kube-apiserver /readyz", ready)

    def _start_controller_manager(self, port: int) -> None:
        pki = self.pki_dir
        kubeconfig = self.work_dir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig(
            kubeconfig,
            "system:kube-controller-manager",
            CertPair(pki / "kube-controller-manager.crt", pki / "kube-controller-manager.key"),
        )
        proc = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                # Delegated authn/authz for its own /healthz,/metrics endpoints;
                # without these it would look for in-cluster config.
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={pki / 'kcm-generated'}",  # self-signed serving cert goes here
                "--leader-elect=false",  # single instance: start controllers immediately
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca.cert}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={self.ca.cert}",
                f"--cluster-signing-key-file={self.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                *self.extra_controller_manager_args,
            ],
        )
        # Its serving cert is self-signed, so skip verification for the probe.
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE

        def healthy() -> bool:
            status, _ = _http_get(f"https://127.0.0.1:{port}/healthz", insecure, 2.0)
            return status == 200

        self._wait_ready(proc, "kube-controller-manager /healthz", healthy)

        # /healthz only says the process is up. Wait until the service-account
        # controller has created default/default: proves the controllers run and
        # Pods in `default` can be admitted right away.
        def default_sa() -> bool:
            status, _ = self.api_get("/api/v1/namespaces/default/serviceaccounts/default")
            return status == 200

        self._wait_ready(proc, "the default ServiceAccount (controllers running)", default_sa)


def _http_get(url: str, ctx: ssl.SSLContext | None, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:  # non-2xx: not ready yet, not an error
        return exc.code, exc.read().decode(errors="replace")


# --------------------------------------------------------------------------- CLI


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local Kubernetes control plane.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start, show namespaces, and stop (unless --keep)")
    up.add_argument("--keep", action="store_true", help="keep running until Ctrl-C / SIGTERM")
    up.add_argument("--work-dir", help="work dir (default: a new temp dir)")
    args = parser.parse_args(argv)

    # SIGTERM -> normal exception path so the `with` block stops the components.
    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    cp = ControlPlane(work_dir=args.work_dir, keep_work_dir=args.keep)
    try:
        with cp:
            print(f"# control plane ready in {cp.startup_seconds:.1f}s; logs in {cp.log_dir}")
            print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
            out = cp.kubectl("get", "ns")
            sys.stdout.write(out.stdout + out.stderr)
            sys.stdout.flush()
            if args.keep:
                print("# running; Ctrl-C to stop", flush=True)
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        print("# stopped", file=sys.stderr)
    except ControlPlaneError as exc:
        print(f"controlplane: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
