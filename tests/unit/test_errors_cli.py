"""One error hierarchy, one CLI handler: exit 2 for bad input, 3 for anything else, never 1, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import webhook.check
from webhook import errors
from webhook.cli import main


def test_every_error_type_belongs_to_the_one_tree_with_its_exit_code() -> None:
    bad_input = [errors.ObjectError, errors.ConfigError, errors.InputError, errors.CertError, errors.TLSError,
                 errors.SourceError, errors.KubeConfigError, errors.AuditError, errors.BadReview]
    for kind in bad_input:
        assert issubclass(kind, errors.BadInput), kind
        assert kind.exit_code == 2, kind
    assert issubclass(errors.LiveReadError, errors.NetpolGuardError)
    assert errors.LiveReadError.exit_code == 3
    assert errors.NetpolGuardError.exit_code == 3


def test_old_import_names_are_the_same_classes() -> None:
    from webhook.certs import CertError
    from webhook.cluster import LiveReadError, SourceError
    from webhook.core.config import ConfigError
    from webhook.loading import InputError
    from webhook.server.tls import TLSError

    assert (CertError, LiveReadError, SourceError, ConfigError, InputError, TLSError) == (
        errors.CertError, errors.LiveReadError, errors.SourceError, errors.ConfigError, errors.InputError,
        errors.TLSError)


def test_an_unexpected_error_exits_3_in_one_line_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("surprise\nsecond line")

    monkeypatch.setattr(webhook.check, "run_check", boom)
    result = CliRunner().invoke(main, ["check", "-"], input="")
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "netpol-guard: internal error: RuntimeError: surprise (please report this)"]


def test_a_non_input_tree_error_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object, **__: object) -> None:
        raise errors.LiveReadError("live read of namespace shop failed: HTTP 500")

    monkeypatch.setattr(webhook.check, "run_check", boom)
    result = CliRunner().invoke(main, ["check", "-"], input="")
    assert result.exit_code == 3
    assert result.output == "netpol-guard: live read of namespace shop failed: HTTP 500\n"


def test_bad_config_exits_2_with_the_headline(tmp_path: object) -> None:
    from pathlib import Path

    config = Path(str(tmp_path)) / "config.yaml"
    config.write_text("mode: sideways\n")
    result = CliRunner().invoke(main, ["check", "--config", str(config), "-"], input="")
    assert result.exit_code == 2
    assert result.output.startswith("netpol-guard: invalid configuration\n")
    assert "mode" in result.output


@pytest.mark.parametrize(("args", "flag"), [
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--port", "0"], "--port"),
    (["serve", "--port", "eighty"], "--port"),
    (["certs", "--days", "1000000000"], "--days"),
    (["certs", "--days", "0"], "--days"),
])
def test_cli_numbers_are_validated_naming_the_flag(args: list[str], flag: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.output
    assert "Traceback" not in result.output


def test_make_certs_bounds_days_itself(tmp_path: object) -> None:
    from webhook.certs import make_certs

    with pytest.raises(errors.CertError, match="--days must be between 1 and 36500, not 1000000000"):
        make_certs(str(tmp_path), service="s", namespace="n", hosts=[], days=1_000_000_000)


def test_the_cli_and_certs_agree_on_the_days_bound() -> None:
    from webhook.certs import MAX_DAYS
    from webhook.cli import MAX_CERT_DAYS

    assert MAX_CERT_DAYS == MAX_DAYS
