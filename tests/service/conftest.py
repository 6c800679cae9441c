"""Fixtures of the service tier: one certificate set per session, servers per module."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from tests.service.support import client_context, make_test_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert_dir, ca_file) shared by servers that never rotate their certificate."""
    directory = tmp_path_factory.mktemp("certs")
    return directory, make_test_certs(directory)


@pytest.fixture(scope="session")
def tls_context(certs: tuple[Path, Path]) -> ssl.SSLContext:
    return client_context(certs[1])


def make_client(base_url: str, context: ssl.SSLContext) -> httpx.Client:
    return httpx.Client(base_url=base_url, verify=context, timeout=10.0)
