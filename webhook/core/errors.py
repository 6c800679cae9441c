"""The root of netpol-guard's one error hierarchy, and the core's own errors.

The root lives here, in the pure core, because the core may import nothing from the
shells (the import-linter fence) yet its errors must belong to the same tree. Every
other error type is declared in `webhook.errors`, which re-exports these; read that
module for the whole tree.

Each class carries the process exit code the CLI uses for it: 2 for bad input or
usage, 3 (the default) for anything else. Exit 1 is reserved for "would be denied",
which is a verdict, not an error.
"""

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class NetpolGuardError(Exception):
    """Anything netpol-guard reports as an error; the message says what and where, for a person."""

    exit_code = EXIT_INTERNAL
    headline = ""  # a line the CLI prints before the message, when the message alone lacks context


class BadInput(NetpolGuardError, ValueError):
    """The user's input (files, flags, config, request) is wrong: exit 2, HTTP 400."""

    exit_code = EXIT_BAD_INPUT


class ObjectError(BadInput):
    """A manifest field is malformed; `path` names it (e.g. `spec.ingress[0].from[1].ipBlock.cidr`)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class ConfigError(BadInput):
    """An invalid configuration; the message names every bad field."""

    headline = "invalid configuration"
