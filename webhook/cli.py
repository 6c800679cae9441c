"""`netpol-guard` command line: check, serve, certs, rules (a thin shell; the decisions live in webhook.core).

Exit codes, everywhere: 0 fine; 1 "would be denied" (check, audit), and nothing else;
2 bad input or usage; 3 any other failure. One handler (`_Group.invoke`) turns every
error into one line on stderr and its code: a `NetpolGuardError` by its `exit_code`
(webhook.errors), anything unexpected as an internal error, never with a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from webhook import __version__
from webhook.core.config import Config
from webhook.errors import EXIT_INTERNAL, NetpolGuardError
from webhook.loading import load_config

EXIT_DENIED = 1
MAX_CERT_DAYS = 36500  # as webhook.certs.MAX_DAYS (not imported here: the CLI loads commands lazily)


class _Group(click.Group):
    """The single error handler of the CLI."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own: --help, usage errors (exit 2), Ctrl-C
        except NetpolGuardError as error:
            headline = f"{error.headline}\n" if error.headline else ""
            click.echo(f"netpol-guard: {headline}{error}", err=True)
            ctx.exit(error.exit_code)
        except Exception as error:  # a bug: say so in one line, never exit 1 (that means "denied")
            detail = str(error).splitlines()[0] if str(error) else ""
            click.echo(f"netpol-guard: internal error: {type(error).__name__}"
                       + (f": {detail}" if detail else "") + " (please report this)", err=True)
            ctx.exit(EXIT_INTERNAL)


def _check_generated_policies(config: Config) -> None:
    """Refuse a generate: section whose policies our own rules would refuse (exit 2, like any bad config)."""
    from webhook.core.errors import ConfigError
    from webhook.core.generate import own_rule_violations

    problems = own_rule_violations(config)
    if problems:
        raise ConfigError("generate: the generated policies break netpol-guard's own rules\n" + "\n".join(problems))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netpol-guard")
def main() -> None:
    """netpol-guard: deny-all NetworkPolicy coverage and NetworkPolicy rules, enforced at admission."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config YAML file.")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--namespace", "-n", default="default", show_default=True,
              help="Namespace for objects that do not name one.")
@click.option("--mode", type=click.Choice(["enforce", "audit"]), help="Override the config's global mode.")
@click.option("--user", default="", help="Judge as this requesting user (principal exemptions, admins).")
@click.option("--group", "groups", multiple=True, help="Judge as a member of this group (repeatable).")
@click.option("--generate", is_flag=True,
              help="Judge as if generation were on: Namespaces in the inputs it would cover get its policies.")
def check(paths: tuple[str, ...], config_path: str | None, output: str, namespace: str, mode: str | None,
          user: str, groups: tuple[str, ...], generate: bool) -> None:
    """Judge manifests offline (files, directories, - for stdin).

    Each object is judged as if created in a cluster holding the Namespaces and
    NetworkPolicies found in the same inputs. Exit 0: all admitted; 1: something
    would be denied; 2: bad input or usage.
    """
    from webhook.check import render, run_check

    config = load_config(config_path)  # a ConfigError: exit 2 naming the field
    if mode is not None:
        config = config.model_copy(update={"mode": mode})
    if generate:
        _check_generated_policies(config)
    report = run_check(list(paths), config, default_namespace=namespace, user=user, groups=groups,
                       generate=generate)
    click.echo(render(report, output), nl=False)
    sys.exit(0 if report.allowed else EXIT_DENIED)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config YAML file.")
@click.option("--host", help="Address to listen on (default 0.0.0.0).")
@click.option("--port", type=click.IntRange(1, 65535), help="HTTPS port (default 8443).")
@click.option("--cert-dir", help="Directory holding tls.crt and tls.key (reloaded when they change).")
@click.option("--client-ca", type=click.Path(dir_okay=False),
              help="Require client certificates signed by this CA (PEM); others are refused at TLS.")
@click.option("--mode", type=click.Choice(["enforce", "audit"]), help="Override the config's global mode.")
@click.option("--kubeconfig", help="Kubeconfig file (default: in-cluster config, then ~/.kube/config).")
@click.option("--state", help="Take Namespaces and NetworkPolicies from manifests here instead of a cluster.")
@click.option("--generate", is_flag=True, default=None,
              help="Generate the default-deny in new namespaces (the Lease holder writes); as generate.enabled.")
def serve(config_path: str | None, host: str | None, port: int | None, cert_dir: str | None,
          client_ca: str | None, mode: str | None, kubeconfig: str | None, state: str | None,
          generate: bool | None) -> None:
    """Run the HTTPS admission webhook (POST /validate, /healthz, /readyz, /metrics)."""
    from webhook.server.run import serve as run_server

    config = load_config(config_path)
    server_overrides: dict[str, Any] = {
        key: value
        for key, value in {"host": host, "port": port, "cert_dir": cert_dir, "client_ca": client_ca,
                           "kubeconfig": kubeconfig, "state": state}.items()
        if value is not None
    }
    updates: dict[str, Any] = {"server": config.server.model_copy(update=server_overrides)}
    if mode is not None:
        updates["mode"] = mode
    if generate:
        updates["generate"] = config.generate.model_copy(update={"enabled": True})
    sys.exit(run_server(config.model_copy(update=updates)))


@main.command()
@click.option("--out-dir", default="certs", show_default=True,
              help="Where to write ca.crt, ca.key, tls.crt, tls.key (an existing CA is reused).")
@click.option("--service", default="netpol-guard", show_default=True, help="The webhook Service name.")
@click.option("--namespace", default="netpol-guard", show_default=True, help="The webhook Service namespace.")
@click.option("--host", "hosts", multiple=True, help="Extra DNS name or IP for the certificate (repeatable).")
@click.option("--days", type=click.IntRange(1, MAX_CERT_DAYS), default=365, show_default=True,
              help="Validity of the serving certificate, in days.")
@click.option("--webhook-manifest", type=click.Path(dir_okay=False),
              help="Write the caBundle into this ValidatingWebhookConfiguration YAML file.")
def certs(out_dir: str, service: str, namespace: str, hosts: tuple[str, ...], days: int,
          webhook_manifest: str | None) -> None:
    """Make a CA and a serving certificate for the webhook, and print the caBundle."""
    from webhook.certs import make_certs

    result = make_certs(out_dir, service=service, namespace=namespace, hosts=list(hosts), days=days,
                        webhook_manifest=webhook_manifest)
    click.echo(result.summary())


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config YAML file.")
@click.option("--kubeconfig", help="Kubeconfig file (default: in-cluster config, then ~/.kube/config).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--mode", type=click.Choice(["enforce", "audit"]), help="Override the config's global mode.")
def audit(config_path: str | None, kubeconfig: str | None, output: str, mode: str | None) -> None:
    """Judge what already exists in a cluster (same engine and output as check).

    Exit 0: everything would be admitted today; 1: something would be denied; 2: the cluster
    could not be read.
    """
    from webhook.audit import run_audit
    from webhook.check import render

    config = load_config(config_path)
    if mode is not None:
        config = config.model_copy(update={"mode": mode})
    report = run_audit(config, kubeconfig)
    click.echo(render(report, output), nl=False)
    sys.exit(0 if report.allowed else EXIT_DENIED)


@main.command()
@click.option("--backfill", is_flag=True, help="Required: one pass over the namespaces that exist now.")
@click.option("--dry-run", is_flag=True, help="List what would be created; change nothing.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config YAML file.")
@click.option("--kubeconfig", help="Kubeconfig file (default: in-cluster config, then ~/.kube/config).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
def generate(backfill: bool, dry_run: bool, config_path: str | None, kubeconfig: str | None, output: str) -> None:
    """Create netpol-guard's default-deny in existing namespaces that generation governs.

    New namespaces are handled by `serve --generate`; existing ones only by this explicit
    backfill. Namespaces that are exempt, opted out, terminating or already covered get
    nothing; nothing is ever updated or deleted. Exit 0: done; 2: usage or the cluster could
    not be read; 3: some writes failed.
    """
    from webhook.generate import backfill as run_backfill
    from webhook.generate import render_backfill

    if not backfill:
        raise click.UsageError("generate needs --backfill (new namespaces are handled by serve --generate)")
    config = load_config(config_path)
    config = config.model_copy(update={"generate": config.generate.model_copy(update={"enabled": True})})
    _check_generated_policies(config)
    results = run_backfill(config, kubeconfig, dry_run=dry_run)  # AuditError/KubeConfigError: exit 2
    click.echo(render_backfill(results, output, dry_run), nl=False)
    sys.exit(3 if any(r.error for r in results) else 0)


@main.command()
def rules() -> None:
    """List the rule catalogue with default actions."""
    from webhook.core.rules import CATALOGUE

    defaults = Config().rules
    width = max(len(rule.id) for rule in CATALOGUE)
    for rule in CATALOGUE:
        action = defaults.get(rule.id).action
        click.echo(f"{rule.id:<{width}}  {action:<7}  {rule.applies_to}: {rule.rejects}")


if __name__ == "__main__":
    main()
