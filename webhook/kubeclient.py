"""Loading Kubernetes client configuration, the same way for `serve` and `audit`."""

from __future__ import annotations

from typing import Any

from webhook.errors import KubeConfigError as KubeConfigError  # re-exported: raised here


def load_configuration(kubeconfig: str | None) -> Any:
    """A `kubernetes.client.Configuration`: the given kubeconfig, else in-cluster, else ~/.kube/config."""
    from kubernetes import client, config  # imported here: --state mode and check never need the client

    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
    except Exception as error:  # the client raises several types (ConfigException, OSError, YAML errors)
        where = kubeconfig or "in-cluster config or ~/.kube/config"
        raise KubeConfigError(f"cannot load Kubernetes client configuration ({where}): {error}") from None
    return configuration
