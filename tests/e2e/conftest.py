"""Fixtures of the e2e tier: one real control plane per session, netpol-guard installed from manifests/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_binaries import find_binaries
from controlplane import ControlPlane
from harness import E2E_CONFIG, Webhook, install_base, register, unregister


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    bin_dir = find_binaries()
    if bin_dir is None:
        pytest.fail("control-plane binaries are not built; run `make binaries` first", pytrace=False)
    with ControlPlane(bin_dir=bin_dir) as plane:
        install_base(plane)
        yield plane


@pytest.fixture(scope="module")
def webhook(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """netpol-guard serving as its ServiceAccount, registered with the shipped webhook configuration."""
    server = Webhook(cluster, tmp_path_factory.mktemp("webhook"), E2E_CONFIG)
    server.start()
    register(cluster, server)
    try:
        yield server
    finally:
        unregister(cluster)
        server.stop()
