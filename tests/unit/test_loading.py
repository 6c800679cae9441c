"""The manifest reader reads YAML as Kubernetes does (sigs.k8s.io/yaml: go-yaml v2, YAML 1.1, then JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from webhook.loading import read_manifests


def scalar(tmp_path: Path, text: str) -> Any:
    file = tmp_path / "x.yaml"
    file.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata:\n  v: {text}\n")
    (manifest,) = read_manifests([str(file)])
    return manifest.obj["data"]["v"]


@pytest.mark.parametrize("text", ["y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"])
def test_yaml_1_1_true(tmp_path: Path, text: str) -> None:
    assert scalar(tmp_path, text) is True


@pytest.mark.parametrize("text", ["n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"])
def test_yaml_1_1_false(tmp_path: Path, text: str) -> None:
    assert scalar(tmp_path, text) is False


@pytest.mark.parametrize("text", ["80", "+80", "0o120", "0O120", "0120", "0x50", "0X50", "0b1010000", "8_0",
                                  "0x_50", "8e1", "80.0", "800e-1"])
def test_go_integer_spellings_are_80(tmp_path: Path, text: str) -> None:
    value = scalar(tmp_path, text)
    assert value == 80
    assert type(value) is int


@pytest.mark.parametrize(("text", "expected"), [
    ('"80"', "80"), ("'0o120'", "0o120"), ("1:20", "1:20"), ("2020-01-01", "2020-01-01"), ("0o8", "0o8"),
    ("yess", "yess"), ("8.5", 8.5), ("-0x10", -16), ("1e21", 1e21), ("~", None), ("+", "+"), ("08", 8),
])
def test_other_scalars(tmp_path: Path, text: str, expected: Any) -> None:
    value = scalar(tmp_path, text)
    assert value == expected
    assert type(value) is type(expected)
