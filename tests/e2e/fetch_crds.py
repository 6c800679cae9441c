"""The real CRDs of the coverage sources, taken from the Go modules that define those APIs.

Pinned module versions come from the Go module proxy (`go mod download -json MODULE@VERSION`),
and the CRD YAML files the module ships are copied into a cache beside the control-plane
binaries: ``~/.cache/netpol-guard/crds/<key>`` (or ``$NETPOL_GUARD_CRD_CACHE``), where the key
hashes the pins. A lock serialises concurrent fetchers, the directory is filled under a
temporary name and renamed into place, and a stamp marks it complete. Cold fetch: two small
module zips and Calico's 9 MB one (about 7 s in all).

- sigs.k8s.io/network-policy-api v0.2.0: ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2)
- sigs.k8s.io/network-policy-api v0.1.7: AdminNetworkPolicy, BaselineAdminNetworkPolicy (v1alpha1)
- github.com/projectcalico/calico at commit a0db560f0520 (the release-v3.28 branch; the proxy
  serves no tagged v3 version of the monorepo, so the pin is its pseudo-version):
  GlobalNetworkPolicy and NetworkPolicy as the crd.projectcalico.org/v1 CRDs Calico generates
  into libcalico-go/config/crd from its projectcalico.org/v3 Go types. That raw form is the only
  one a plain API server serves (projectcalico.org/v3 needs Calico's aggregated API server).
  Calico 3.28 has no Tier CRD in its open-source build; policies there are in the default tier.

Cilium is not fetched: its module is hundreds of megabytes; its semantics are covered by the
unit tier.

Run: ``python tests/e2e/fetch_crds.py [--print-dir]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
from cache import fill

# (module, version, files inside the module): the CRDs as their project publishes them.
PINS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("sigs.k8s.io/network-policy-api", "v0.2.0",
     ("config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml",)),
    ("sigs.k8s.io/network-policy-api", "v0.1.7",
     ("config/crd/standard/policy.networking.k8s.io_adminnetworkpolicies.yaml",
      "config/crd/standard/policy.networking.k8s.io_baselineadminnetworkpolicies.yaml")),
    ("github.com/projectcalico/calico", "v1.11.0-cni-plugin.0.20250813170300-a0db560f0520",
     ("libcalico-go/config/crd/crd.projectcalico.org_globalnetworkpolicies.yaml",
      "libcalico-go/config/crd/crd.projectcalico.org_networkpolicies.yaml")),
)
STAMP_NAME = ".fetch-complete"


class FetchError(Exception):
    pass


def _log(message: str) -> None:
    print(f"[fetch_crds] {message}", file=sys.stderr, flush=True)


def cache_key() -> str:
    digest = hashlib.sha256(json.dumps(PINS).encode()).hexdigest()
    return digest[:16]


def cache_dir(key: str) -> pathlib.Path:
    override = os.environ.get("NETPOL_GUARD_CRD_CACHE")
    if override:
        return pathlib.Path(override).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "netpol-guard" / "crds" / key


def crd_files(directory: pathlib.Path) -> dict[str, pathlib.Path]:
    """File name -> path, for every pinned CRD."""
    return {pathlib.Path(f).name: directory / pathlib.Path(f).name for _, _, files in PINS for f in files}


def _complete(directory: pathlib.Path, key: str) -> bool:
    try:
        if (directory / STAMP_NAME).read_text().strip() != key:
            return False
    except OSError:
        return False
    return all(path.is_file() for path in crd_files(directory).values())


def _download(module: str, version: str) -> pathlib.Path:
    go = shutil.which("go")
    if go is None:
        raise FetchError("`go` not found on PATH; it fetches the CRDs from the Go module proxy")
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"], env=env, capture_output=True,
                          text=True, cwd=tempfile.gettempdir(), timeout=600)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or info.get("Error") or not info.get("Dir"):
        proxy = env.get("GOPROXY") or "https://proxy.golang.org,direct"
        raise FetchError(f"`go mod download {module}@{version}` failed (GOPROXY={proxy}): "
                         f"{info.get('Error') or proc.stderr.strip().splitlines()[-1:]}")
    return pathlib.Path(info["Dir"])


def ensure_crds(*, quiet: bool = False) -> pathlib.Path:
    """The directory holding the pinned CRD YAML files, fetching them first when needed."""
    key = cache_key()
    directory = cache_dir(key)
    start = time.monotonic()

    def build(tmp: pathlib.Path) -> str:
        for module, version, files in PINS:
            module_dir = _download(module, version)
            for name in files:
                source = module_dir / name
                if not source.is_file():
                    raise FetchError(f"{module}@{version} has no {name}")
                shutil.copyfile(source, tmp / source.name)
        return key + "\n"
    if fill(directory, STAMP_NAME, lambda d: _complete(d, key), build):
        _log(f"CRDs fetched in {time.monotonic() - start:.1f}s -> {directory}")
    elif not quiet:
        _log(f"CRDs up to date (key {key}): {directory}")
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print-dir", action="store_true", help="print only the CRD directory on stdout")
    args = parser.parse_args(argv)
    try:
        directory = ensure_crds()
    except (FetchError, OSError, subprocess.SubprocessError) as error:
        print(f"fetch_crds: error: {error}", file=sys.stderr)
        return 2
    if args.print_dir:
        print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
