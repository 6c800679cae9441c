"""The one error type of the core: an object it cannot read, with where."""


class ObjectError(ValueError):
    """A manifest field is malformed; `path` names it (e.g. `spec.ingress[0].from[1].ipBlock.cidr`)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem
