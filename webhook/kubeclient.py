"""Loading Kubernetes client configuration, the same way for `serve` and `audit`.

In a pod the client reads KUBERNETES_SERVICE_HOST/PORT and the ServiceAccount token and CA
from /var/run/secrets/kubernetes.io/serviceaccount. NETPOL_GUARD_SERVICEACCOUNT_DIR moves
that directory, so the in-cluster path runs (and is tested) outside a pod as well.
"""

from __future__ import annotations

import os
from typing import Any

from webhook.errors import KubeConfigError as KubeConfigError  # re-exported: raised here

SERVICEACCOUNT_DIR_ENV = "NETPOL_GUARD_SERVICEACCOUNT_DIR"
SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def load_configuration(kubeconfig: str | None) -> Any:
    """A `kubernetes.client.Configuration`: the given kubeconfig, else in-cluster, else ~/.kube/config."""
    from kubernetes import client, config  # imported here: --state mode and check never need the client

    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                _load_incluster(configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
    except Exception as error:  # the client raises several types (ConfigException, OSError, YAML errors)
        where = kubeconfig or "in-cluster config or ~/.kube/config"
        raise KubeConfigError(f"cannot load Kubernetes client configuration ({where}): {error}") from None
    return configuration


def _load_incluster(configuration: Any) -> None:
    from kubernetes.config.incluster_config import InClusterConfigLoader

    directory = os.environ.get(SERVICEACCOUNT_DIR_ENV) or SERVICEACCOUNT_DIR
    loader = InClusterConfigLoader(token_filename=os.path.join(directory, "token"),
                                   cert_filename=os.path.join(directory, "ca.crt"))
    loader.load_and_set(configuration)
