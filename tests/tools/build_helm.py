#!/usr/bin/env python3
"""Build (and cache) the helm CLI from its Go module, for the chart tests.

Debian has no helm package, so, like the control plane (tests/e2e/build_binaries.py),
helm is compiled from the Go module pinned in ``tests/tools/helm/go.mod`` (the
`tool helm.sh/helm/v3/cmd/helm` directive); only the Go module proxy is needed.

Cache: ``$NETPOL_GUARD_HELM_CACHE`` if set, else
``${XDG_CACHE_HOME:-~/.cache}/netpol-guard/helm/<key>/helm``, where ``<key>`` hashes
go.mod, go.sum and ``go version``. One builder at a time (a lock file), the build goes
to a temporary sibling directory renamed into place, and a stamp written last marks
it complete, so an interrupted build never leaves a half cache.

Usage: ``python tests/tools/build_helm.py [--print-path]``; Python callers use
:func:`ensure_helm`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

MODULE_DIR = pathlib.Path(__file__).resolve().parent / "helm"
PACKAGE = "helm.sh/helm/v3/cmd/helm"
STAMP_NAME = ".build-complete"
HELM_VERSION = "v3.21.4"  # keep in step with go.mod
K8S_MINOR = "36"  # of the k8s.io modules helm is built with (go.sum): helm's default Kubernetes version
# As helm's own Makefile does: without these, `helm template` assumes Kubernetes v1.20.
LDFLAGS = " ".join([
    "-s -w",
    f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
    *(f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
      for pkg in ("chartutil", "lint/rules") for part, value in (("Major", "1"), ("Minor", K8S_MINOR))),
])


class BuildError(RuntimeError):
    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: no Go toolchain or proxy (an environment without the tools)


def _log(message: str) -> None:
    print(f"[build_helm] {message}", file=sys.stderr, flush=True)


def _go_env() -> dict[str, str]:
    return {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}


def _go() -> tuple[str, str]:
    go = shutil.which("go")
    if go is None:
        raise BuildError("`go` not found on PATH; install Go >= 1.26 to build helm", exit_code=2)
    version = subprocess.run([go, "version"], env=_go_env(), capture_output=True, text=True, check=False)
    if version.returncode != 0:
        raise BuildError(f"`go version` failed: {version.stderr.strip()}", exit_code=2)
    return go, version.stdout.strip()


def cache_key(go_version: str) -> str:
    digest = hashlib.sha256(go_version.encode() + b"\0" + LDFLAGS.encode())
    for name in ("go.mod", "go.sum"):
        digest.update(b"\0" + name.encode() + b"\0" + (MODULE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_dir(key: str) -> pathlib.Path:
    override = os.environ.get("NETPOL_GUARD_HELM_CACHE")
    if override:
        return pathlib.Path(override).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "netpol-guard" / "helm" / key


def _complete(directory: pathlib.Path, key: str) -> bool:
    try:
        return (directory / STAMP_NAME).read_text().strip() == key and os.access(directory / "helm", os.X_OK)
    except OSError:
        return False


@contextlib.contextmanager
def _locked(directory: pathlib.Path) -> Iterator[None]:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(go: str, key: str, directory: pathlib.Path) -> None:
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    log_path = directory.parent / f"{directory.name}.build.log"
    start = time.monotonic()
    _log(f"building helm from {MODULE_DIR / 'go.mod'} into {directory} (cold: a few minutes)")
    try:
        with open(log_path, "w") as log:
            for command in ([go, "mod", "download"],
                            [go, "build", "-trimpath", "-buildvcs=false", "-ldflags", LDFLAGS,
                             "-o", str(tmp / "helm"), PACKAGE]):
                log.write(f"$ {' '.join(command)}\n")
                log.flush()
                proc = subprocess.run(command, cwd=MODULE_DIR, env={**_go_env(), "GOTMPDIR": str(tmp)},
                                      stdout=log, stderr=subprocess.STDOUT, check=False)
                if proc.returncode != 0:
                    tail = "\n".join(log_path.read_text().splitlines()[-15:])
                    code = 2 if command[1] == "mod" else 3  # download failing means no module proxy
                    raise BuildError(f"`{' '.join(command[:2])}` failed for helm (log {log_path}):\n{tail}", code)
        for leftover in tmp.iterdir():
            if leftover.name != "helm":
                shutil.rmtree(leftover, ignore_errors=True)
        tmp.chmod(0o755)
        (tmp / STAMP_NAME).write_text(key + "\n")  # last: marks the build complete
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _log(f"built helm in {time.monotonic() - start:.0f}s -> {directory / 'helm'}")


def ensure_helm() -> pathlib.Path:
    """The path of the helm binary, building it first when the cache is missing or stale."""
    go, version = _go()
    key = cache_key(version)
    directory = cache_dir(key)
    if not _complete(directory, key):
        with _locked(directory):
            if not _complete(directory, key):  # another process may have finished meanwhile
                _build(go, key, directory)
    return directory / "helm"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print-path", action="store_true", help="print the helm binary's path on stdout")
    args = parser.parse_args(argv)
    try:
        path = ensure_helm()
    except BuildError as error:
        print(f"build_helm: {error}", file=sys.stderr)
        return error.exit_code
    print(path if args.print_path else f"helm: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
