"""The root of netpol-guard's one error hierarchy, and the core's own errors.

The root lives here, in the pure core, because the core may import nothing from the
shells (the import-linter fence) yet its errors must belong to the same tree. Every
other error type is declared in `webhook.errors`, which re-exports these; read that
module for the whole tree.

Each class carries the process exit code the CLI uses for it: 2 for bad input or
usage, 3 (the default) for anything else. Exit 1 is reserved for "would be denied",
which is a verdict, not an error.
"""

import re
import reprlib

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3

# Client values that reach a response or a log line are clipped to this many characters each,
# and a whole message to MAX_TEXT_CHARS: a 3 MB `kind` must not become a 15 MB answer.
MAX_VALUE_CHARS = 256
MAX_TEXT_CHARS = 4096
ELLIPSIS = "…"

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = MAX_VALUE_CHARS
_repr.maxlevel, _repr.maxdict, _repr.maxlist = 3, 8, 8
_LONG_RUN = re.compile(rf"\S{{{MAX_VALUE_CHARS + 1},}}")


def clip(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def clip_repr(value: object) -> str:
    """A bounded repr of a client value, whatever its size or depth (for messages that quote it)."""
    return clip(_repr.repr(value))


def clip_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """A message built from client values: every unbroken run cut to MAX_VALUE_CHARS, the whole to `limit`."""
    if len(text) <= MAX_VALUE_CHARS:
        return text
    if _LONG_RUN.search(text, 0, limit * 2) is not None:
        text = _LONG_RUN.sub(lambda match: clip(match.group()), text[: limit * 2])
    return clip(text, limit)


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
        path, problem = clip(path), clip_text(problem, 2 * MAX_VALUE_CHARS)  # both may quote client values
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class ConfigError(BadInput):
    """An invalid configuration; the message names every bad field."""

    headline = "invalid configuration"
