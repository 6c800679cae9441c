"""Build (and cache) a Go program from the module pinned in a directory of tests/tools, with only a Go
toolchain and the Go module proxy (this project's machines have no binary downloads).

One builder at a time (a lock file), the build goes to a temporary sibling directory renamed into place,
and a stamp written last marks it complete, so an interrupted build never leaves a half cache. The cache
is ``$NETPOL_GUARD_<NAME>_CACHE`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/netpol-guard/<name>/<key>/``,
where ``<key>`` hashes go.mod, go.sum, the module's own .go files, the link flags and ``go version``.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cache import fill

STAMP_NAME = ".build-complete"


class BuildError(RuntimeError):
    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: no Go toolchain or proxy (an environment without the tools)


def _go_env() -> dict[str, str]:
    return {**os.environ, "CGO_ENABLED": "0", "GOWORK": "off", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}


@dataclass(frozen=True)
class GoTool:
    """A program built from `package` in the Go module at `module_dir` into a binary called `name`."""

    name: str
    module_dir: pathlib.Path
    package: str
    ldflags: str = "-s -w"

    def _log(self, message: str) -> None:
        print(f"[build_{self.name}] {message}", file=sys.stderr, flush=True)

    def _go(self) -> tuple[str, str]:
        go = shutil.which("go")
        if go is None:
            raise BuildError(f"`go` not found on PATH; install Go >= 1.26 to build {self.name}", exit_code=2)
        version = subprocess.run([go, "version"], env=_go_env(), capture_output=True, text=True, check=False)
        if version.returncode != 0:
            raise BuildError(f"`go version` failed: {version.stderr.strip()}", exit_code=2)
        return go, version.stdout.strip()

    def cache_key(self, go_version: str) -> str:
        digest = hashlib.sha256(go_version.encode() + b"\0" + self.ldflags.encode())
        sources = sorted(path.name for path in self.module_dir.glob("*.go"))  # a tool of our own, not a module's
        for name in ("go.mod", "go.sum", *sources):
            digest.update(b"\0" + name.encode() + b"\0" + (self.module_dir / name).read_bytes())
        return digest.hexdigest()[:16]

    def cache_dir(self, key: str) -> pathlib.Path:
        override = os.environ.get(f"NETPOL_GUARD_{self.name.upper()}_CACHE")
        if override:
            return pathlib.Path(override).expanduser().resolve()
        base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
        return pathlib.Path(base) / "netpol-guard" / self.name / key

    def _complete(self, directory: pathlib.Path, key: str) -> bool:
        try:
            return ((directory / STAMP_NAME).read_text().strip() == key
                    and os.access(directory / self.name, os.X_OK))
        except OSError:
            return False

    def _build(self, go: str, directory: pathlib.Path, tmp: pathlib.Path) -> None:
        """go mod download, then go build into `tmp`, with go's own temporary files kept there too."""
        log_path = directory.parent / f"{directory.name}.build.log"
        with open(log_path, "w") as log:
            for command in ([go, "mod", "download"],
                            [go, "build", "-trimpath", "-buildvcs=false", "-ldflags", self.ldflags,
                             "-o", str(tmp / self.name), self.package]):
                log.write(f"$ {' '.join(command)}\n")
                log.flush()
                proc = subprocess.run(command, cwd=self.module_dir, env={**_go_env(), "GOTMPDIR": str(tmp)},
                                      stdout=log, stderr=subprocess.STDOUT, check=False)
                if proc.returncode != 0:
                    tail = "\n".join(log_path.read_text().splitlines()[-15:])
                    code = 2 if command[1] == "mod" else 3  # download failing means no module proxy
                    raise BuildError(f"`{' '.join(command[:2])}` failed for {self.name} (log {log_path}):\n"
                                     f"{tail}", code)
        for leftover in tmp.iterdir():
            if leftover.name != self.name:
                shutil.rmtree(leftover, ignore_errors=True)

    def ensure(self) -> pathlib.Path:
        """The path of the binary, building it first when the cache is missing or stale."""
        go, version = self._go()
        key = self.cache_key(version)
        directory = self.cache_dir(key)
        start = time.monotonic()

        def build(tmp: pathlib.Path) -> str:
            self._log(f"building {self.name} from {self.module_dir / 'go.mod'} into {directory} (cold: minutes)")
            self._build(go, directory, tmp)
            return key + "\n"
        if fill(directory, STAMP_NAME, lambda d: self._complete(d, key), build):
            self._log(f"built {self.name} in {time.monotonic() - start:.0f}s -> {directory / self.name}")
        return directory / self.name

    def main(self, description: str, argv: list[str] | None = None) -> int:
        import argparse

        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--print-path", action="store_true", help=f"print the {self.name} binary's path")
        args = parser.parse_args(argv)
        try:
            path = self.ensure()
        except BuildError as error:
            print(f"build_{self.name}: {error}", file=sys.stderr)
            return error.exit_code
        print(path if args.print_path else f"{self.name}: {path}")
        return 0
