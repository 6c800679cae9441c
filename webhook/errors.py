"""netpol-guard's one error hierarchy (the root is in `webhook.core.errors`, inside the pure core's fence).

    NetpolGuardError                      exit 3: an internal or environment failure
    ├── BadInput (ValueError)             exit 2: bad input or usage; HTTP 400 in the service
    │   ├── ObjectError                   a manifest field is malformed (core)
    │   ├── ConfigError                   the config file is invalid (core)
    │   ├── InputError                    unreadable file, bad YAML, not a Kubernetes object
    │   ├── CertError                     `certs` cannot make or write certificates
    │   ├── TLSError                      the serving certificate or key cannot be used
    │   ├── SourceError                   the cluster source cannot start (--state, kubeconfig)
    │   ├── KubeConfigError               no usable Kubernetes client configuration
    │   ├── AuditError                    the cluster could not be read by `audit`
    │   └── BadReview                     the body is not an AdmissionReview we can answer
    └── LiveReadError                     the live confirm could not read the API server

The CLI has one handler for the whole tree (`webhook.cli`): the message on stderr and the
class's `exit_code`; anything outside the tree is an internal error, exit 3, never 1 and
never a traceback. Modules raise these by their own names (`webhook.certs.CertError` is this
`CertError`), so callers may import from either place.
"""

from __future__ import annotations

import traceback

from webhook.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    MAX_TEXT_CHARS,
    MAX_VALUE_CHARS,
    BadInput,
    ConfigError,
    NetpolGuardError,
    ObjectError,
    clip,
    clip_repr,
    clip_text,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERNAL",
    "MAX_TEXT_CHARS",
    "MAX_VALUE_CHARS",
    "AuditError",
    "BadInput",
    "BadReview",
    "CertError",
    "ConfigError",
    "InputError",
    "KubeConfigError",
    "LiveReadError",
    "NetpolGuardError",
    "ObjectError",
    "SourceError",
    "TLSError",
    "clip",
    "clip_repr",
    "clip_text",
]


def describe_bug(error: BaseException) -> str:
    """An unexpected exception in one bounded line with where it was raised (for logs that carry no traceback)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].lineno}" if frames else ""
    return clip_text(f"{type(error).__name__}{where}: {error}", MAX_VALUE_CHARS * 2)


class InputError(BadInput):
    """Bad input: unreadable file, bad YAML, or an object that is not a Kubernetes object."""


class CertError(BadInput):
    """Bad input or an I/O failure while making certificates; the message says what and where."""


class TLSError(BadInput):
    """The certificate or key cannot be used; the message names the file."""


class SourceError(BadInput):
    """The source cannot start (bad manifests, no usable kubeconfig); the message says why."""


class KubeConfigError(BadInput):
    """No usable client configuration; the message says which source was tried."""


class AuditError(BadInput):
    """The cluster could not be read; the message says what failed."""


class BadReview(BadInput):
    """The body is not an AdmissionReview we can answer: HTTP 400 with this message."""


class LiveReadError(NetpolGuardError):
    """A live read for the confirm failed (API server unreachable, timeout, forbidden)."""
