#!/usr/bin/env python3
"""Build (and cache) the helm CLI from its Go module, for the chart tests.

Debian has no helm package, so, like the control plane (tests/e2e/build_binaries.py),
helm is compiled from the Go module pinned in ``tests/tools/helm/go.mod`` (the
`tool helm.sh/helm/v3/cmd/helm` directive); only the Go module proxy is needed.

Cache: ``$NETPOL_GUARD_HELM_CACHE`` if set, else
``${XDG_CACHE_HOME:-~/.cache}/netpol-guard/helm/<key>/helm`` (see tests/tools/gotool.py).

Usage: ``python tests/tools/build_helm.py [--print-path]``; Python callers use
:func:`ensure_helm`.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gotool import BuildError, GoTool

HELM_VERSION = "v3.21.4"  # keep in step with go.mod
K8S_MINOR = "36"  # of the k8s.io modules helm is built with (go.sum): helm's default Kubernetes version
# As helm's own Makefile does: without these, `helm template` assumes Kubernetes v1.20.
LDFLAGS = " ".join([
    "-s -w",
    f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
    *(f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
      for pkg in ("chartutil", "lint/rules") for part, value in (("Major", "1"), ("Minor", K8S_MINOR))),
])
HELM = GoTool("helm", pathlib.Path(__file__).resolve().parent / "helm", "helm.sh/helm/v3/cmd/helm", LDFLAGS)
__all__ = ["HELM", "BuildError", "ensure_helm"]


def ensure_helm() -> pathlib.Path:
    """The path of the helm binary, building it first when the cache is missing or stale."""
    return HELM.ensure()


if __name__ == "__main__":
    sys.exit(HELM.main(__doc__.split("\n\n")[0]))
