#!/usr/bin/env python3
"""CRDs of the projects we write reports for, from their Go modules (pinned version and hash) into a cache.

- OpenReports `Report`/`ClusterReport` from github.com/openreports/reports-api (what
  manifests/components/reports ships: a test checks the committed copies equal these);
- wgpolicyk8s.io `PolicyReport`/`ClusterPolicyReport` from github.com/kyverno/kyverno
  (for the e2e of `audit.reportFormat: policyreport`; not shipped).

`go mod download` fetches each module through the Go module proxy and checks it against
the checksum database; we also check its hash against the one pinned here. The files land
in ``${XDG_CACHE_HOME:-~/.cache}/netpol-guard/crds/<module>@<version>/`` (override:
``$NETPOL_GUARD_CRD_CACHE``), copied into a temporary sibling directory that is renamed
into place with a stamp written last, under a lock, so concurrent or interrupted runs never
see half a copy. Usage: ``python tests/e2e/crds.py`` prints the directories.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tools"))
from cache import fill

STAMP_NAME = ".complete"


@dataclass(frozen=True)
class CrdModule:
    path: str
    version: str
    sum: str  # go.sum h1: hash of the module zip
    files: tuple[str, ...]  # inside the module


OPENREPORTS = CrdModule(
    "github.com/openreports/reports-api", "v0.2.1", "h1:g9KS3yle9Y1elmww4TK9EkD1rl6inIaiIJPX6e+u680=",
    ("config/crd/openreports.io_reports.yaml", "config/crd/openreports.io_clusterreports.yaml"),
)
POLICYREPORT = CrdModule(
    "github.com/kyverno/kyverno", "v1.15.2", "h1:1eDivq33TEgHwZkPl/4Id+9p+x6/3ieg1WzBGjmHWk0=",
    ("config/crds/policyreport/wgpolicyk8s.io_policyreports.yaml",
     "config/crds/policyreport/wgpolicyk8s.io_clusterpolicyreports.yaml"),
)


class CrdError(Exception):
    """The module could not be fetched or is not the pinned one."""


def cache_root() -> pathlib.Path:
    override = os.environ.get("NETPOL_GUARD_CRD_CACHE")
    if override:
        return pathlib.Path(override)
    base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return base / "netpol-guard" / "crds"


def _download(module: CrdModule) -> pathlib.Path:
    go = shutil.which("go")
    if go is None:
        raise CrdError("`go` not found on PATH; it fetches the CRDs' Go modules from the module proxy")
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local"}
    with tempfile.TemporaryDirectory() as empty:  # outside any go.mod: download just this module
        proc = subprocess.run([go, "mod", "download", "-json", f"{module.path}@{module.version}"], cwd=empty,
                              env=env, capture_output=True, text=True, timeout=600, check=False)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or info.get("Error") or not info.get("Dir"):
        raise CrdError(f"go mod download {module.path}@{module.version} failed: "
                       f"{info.get('Error') or proc.stderr.strip()}")
    if info.get("Sum") != module.sum:
        raise CrdError(f"{module.path}@{module.version} has hash {info.get('Sum')}, not the pinned {module.sum}")
    return pathlib.Path(info["Dir"])


def ensure_crds(module: CrdModule) -> pathlib.Path:
    """The directory holding the module's CRD files (fetched once, then cached)."""
    target = cache_root() / f"{module.path.replace('/', '_')}@{module.version}"

    def build(tmp: pathlib.Path) -> str:
        source = _download(module)
        for name in module.files:
            shutil.copyfile(source / name, tmp / pathlib.Path(name).name)
        return f"{module.path}@{module.version} {module.sum}\n"
    fill(target, STAMP_NAME, lambda d: (d / STAMP_NAME).exists(), build)
    return target


def crd_files(module: CrdModule) -> list[pathlib.Path]:
    directory = ensure_crds(module)
    return [directory / pathlib.Path(name).name for name in module.files]


if __name__ == "__main__":
    try:
        for crd_module in (OPENREPORTS, POLICYREPORT):
            print(ensure_crds(crd_module))
    except CrdError as error:
        print(f"crds: {error}", file=sys.stderr)
        sys.exit(2)
