from __future__ import annotations

from pathlib import Path

import pytest

from webhook.core.config import Config, ConfigError, config_from_data
from webhook.loading import load_config

EXAMPLE = """
mode: enforce            # enforce | audit
coverage: namespace      # namespace | pod
exemptions:
  namespaces: [legacy]
  namespaceSelector: {matchLabels: {netpol-guard.io/exempt: "true"}}
  principals: {users: [], groups: [], serviceAccounts: []}
modeOverrides:
  - namespaceSelector: {matchLabels: {rollout: audit}}
    mode: audit
rules:
  allow-all-ingress: {action: enforce, exemptNamespaces: [ingress-nginx], openPorts: []}
  allow-all-egress: {openPorts: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}
  broad-cidr: {minPrefixV4: 8, minPrefixV6: 32}
  port-range: {maxPorts: 1024}
  explicit-policy-types: {action: warn}
"""


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(EXAMPLE)
    config = load_config(str(path))
    assert config.exempt_namespace_names() >= {"legacy", "kube-system", "kube-public", "kube-node-lease",
                                              "netpol-guard"}
    assert config.rules.allow_all_ingress.exempt_namespaces == ["ingress-nginx"]
    assert config.protected_label_keys() == {"netpol-guard.io/exempt", "rollout"}


def test_defaults() -> None:
    config = Config()
    assert config.mode == "enforce" and config.coverage == "namespace" and config.fail_closed
    assert [(p.port, p.protocol) for p in config.rules.allow_all_egress.open_ports] == [(53, "UDP"), (53, "TCP")]
    assert config.rules.allow_all_ingress.open_ports == []
    assert (config.rules.broad_cidr.min_prefix_v4, config.rules.broad_cidr.min_prefix_v6) == (8, 32)
    assert config.rules.port_range.max_ports == 1024
    assert config.rules.explicit_policy_types.action == "warn"
    assert config.rules.deny_all_coverage.action == "enforce"


@pytest.mark.parametrize(("data", "message"), [
    ({"mode": "block"}, "config: mode: Input should be 'enforce' or 'audit'"),
    ({"modee": "audit"}, "config: modee: unknown key"),
    ({"rules": {"allow-everything": {}}}, "config: rules.allow-everything: unknown key (not a rule id)"),
    ({"rules": {"broad-cidr": {"minPrefixV4": 40}}}, "config: rules.broad-cidr.minPrefixV4: Input should be less"),
    ({"rules": {"port-range": {"action": "deny"}}}, "config: rules.port-range.action: Input should be 'enforce'"),
    ({"exemptions": {"principals": {"serviceAccounts": ["nope"]}}}, "config: exemptions.principals.serviceAccounts"),
    ({"modeOverrides": [{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]},
                         "mode": "audit"}]}, "config: modeOverrides.0.namespaceSelector"),
    (["mode", "audit"], "config: the configuration must be a mapping"),
])
def test_invalid_config_names_the_field(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_data(data)
    assert message in str(caught.value)


def test_unreadable_or_invalid_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: [enforce\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML \(line 2\)"):
        load_config(str(bad))


def test_every_catalogued_rule_is_configurable_by_its_id() -> None:
    from webhook.core.config import Rules
    from webhook.core.rules import CATALOGUE

    ids = [rule.id for rule in CATALOGUE]
    assert ids == ["deny-all-coverage", "host-network", "allow-all-ingress", "allow-all-egress", "any-namespace",
                   "broad-cidr", "metadata-endpoint", "port-range", "explicit-policy-types", "protect-deny-all",
                   "protected-labels"]
    assert sorted(field.alias or name for name, field in Rules.model_fields.items()) == sorted(ids)
    for rule_id in ids:
        assert Config().rules.get(rule_id).action in ("enforce", "warn")


def test_open_ports_are_read_like_network_policy_ports() -> None:
    from webhook.core.config import ConfigError, config_from_data

    cfg = config_from_data({"rules": {"allow-all-ingress": {"openPorts": [{"port": "443"}, {"port": "https"}]}}})
    assert [p.port for p in cfg.rules.allow_all_ingress.open_ports] == [443, "https"]
    with pytest.raises(ConfigError) as caught:
        config_from_data({"rules": {"allow-all-ingress": {"openPorts": [{"port": "²"}]}}})
    assert "rules.allow-all-ingress.openPorts.0.port" in str(caught.value)
    assert "IANA service name" in str(caught.value)


def test_metadata_endpoint_settings() -> None:
    from webhook.core.config import ConfigError, config_from_data

    cfg = config_from_data({})
    assert cfg.rules.metadata_endpoint.addresses == ["169.254.169.254", "169.254.170.2", "169.254.170.23",
                                                     "fd00:ec2::254", "fd00:ec2::23", "100.100.100.200"]
    assert cfg.rules.metadata_endpoint.port_intervals == (("TCP", (80, 80)),)
    with pytest.raises(ConfigError) as caught:
        config_from_data({"rules": {"metadata-endpoint": {"addresses": ["169.254.169.254/32"]}}})
    assert "rules.metadata-endpoint.addresses" in str(caught.value)
    with pytest.raises(ConfigError):
        config_from_data({"rules": {"metadata-endpoint": {"ports": [{"port": "http"}]}}})


def test_metadata_addresses_are_read_as_ipblocks_are() -> None:
    """An IPv4-mapped address is the IPv4 address it maps (as the engine reads mapped ipBlocks, and as the
    VAP's CEL ip() needs); a zone names an interface, which no CIDR holds."""
    mapped = config_from_data({"rules": {"metadata-endpoint": {"addresses": ["::ffff:169.254.169.254", "fd00::1"]}}})
    assert mapped.rules.metadata_endpoint.addresses == ["169.254.169.254", "fd00::1"]
    with pytest.raises(ConfigError) as caught:
        config_from_data({"rules": {"metadata-endpoint": {"addresses": ["fe80::1%eth0"]}}})
    assert "rules.metadata-endpoint.addresses" in str(caught.value) and "has a zone (%eth0)" in str(caught.value)
