#!/usr/bin/env python3
"""Build (and cache) the local Kubernetes control-plane binaries from Go modules.

The e2e tests run a real kube-apiserver / kube-controller-manager / etcd on
loopback (like controller-runtime's envtest). Instead of downloading release
binaries we compile them from the Go modules pinned in
``tests/e2e/controlplane/{k8s,etcd}/go.mod``; only the Go module proxy is
needed.

Usage::

    python tests/e2e/build_binaries.py               # build if needed
    python tests/e2e/build_binaries.py --print-dir   # build if needed, print bin dir

Cache location: ``$NETPOL_GUARD_BIN_CACHE`` if set, else
``${XDG_CACHE_HOME:-~/.cache}/netpol-guard/controlplane/<key>/`` where ``<key>``
hashes the module sources, the build flags and ``go version``. A stamp file,
written last, marks a complete build; builds happen in a temporary sibling
directory that is renamed into place, so an interrupted build never leaves a
half-populated cache.

Python callers use :func:`ensure_binaries`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

HERE = pathlib.Path(__file__).resolve().parent
MODULES_DIR = HERE / "controlplane"

K8S_VERSION = "v1.36.3"
STAMP_NAME = ".build-complete"
HEARTBEAT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """One binary: the Go module directory and the main package inside it."""

    name: str
    module: str  # sub-directory of MODULES_DIR
    package: str  # main package, relative to the module


# etcd first: it is the smallest, so a broken toolchain shows up quickly.
TARGETS: tuple[Target, ...] = (
    Target("etcd", "etcd", "./cmd/etcd"),
    Target("kube-apiserver", "k8s", "./cmd/kube-apiserver"),
    Target("kube-controller-manager", "k8s", "./cmd/kube-controller-manager"),
    Target("kubectl", "k8s", "./cmd/kubectl"),
)
BINARY_NAMES: tuple[str, ...] = tuple(t.name for t in TARGETS)


def _k8s_version_ldflags() -> list[str]:
    # Without these, `kubectl version` and /version report v0.0.0-master; the
    # upstream build (hack/lib/version.sh) injects them the same way.
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return flags


def _ldflags(module: str) -> str:
    # -s -w strips symbol/DWARF tables: smaller binaries, faster links.
    flags = ["-s", "-w"]
    if module == "k8s":
        flags += _k8s_version_ldflags()
    return " ".join(flags)


class BuildError(RuntimeError):
    """Building the binaries failed; the message is a single readable line."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _log(msg: str) -> None:
    # Progress goes to stderr so `--print-dir` keeps stdout machine-readable.
    print(f"[build_binaries] {msg}", file=sys.stderr, flush=True)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"  # static binaries, no C toolchain needed
    env["GOWORK"] = "off"  # never pick up a go.work from a parent directory
    env.setdefault("GOTOOLCHAIN", "local")  # don't silently download another Go
    return env


def _find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "`go` not found on PATH; install Go >= 1.26 to build the control-plane binaries",
            exit_code=2,
        )
    return go


def _go_version(go: str) -> str:
    try:
        out = subprocess.run([go, "version"], env=_go_env(), capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"`go version` failed: {exc}", exit_code=2) from None
    return out.stdout.strip()


def _modules() -> list[str]:
    # Order of first appearance in TARGETS: etcd (small, fails fast) first.
    return list(dict.fromkeys(t.module for t in TARGETS))


def _source_files() -> list[pathlib.Path]:
    files: list[pathlib.Path] = []
    for module in _modules():
        mod_dir = MODULES_DIR / module
        files += [mod_dir / "go.mod", mod_dir / "go.sum"]
        files += sorted(mod_dir.rglob("*.go"))
    return files


def cache_key(go_version: str) -> str:
    """Short hash of everything that determines the binaries' content."""
    h = hashlib.sha256()
    h.update(go_version.encode())
    for target in TARGETS:
        h.update(f"\0{target}\0{_ldflags(target.module)}".encode())
    for path in _source_files():
        h.update(b"\0" + str(path.relative_to(MODULES_DIR)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_dir(key: str) -> pathlib.Path:
    override = os.environ.get("NETPOL_GUARD_BIN_CACHE")
    if override:
        return pathlib.Path(override).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "netpol-guard" / "controlplane" / key


def _is_complete(bin_dir: pathlib.Path, key: str) -> bool:
    stamp = bin_dir / STAMP_NAME
    try:
        if stamp.read_text().strip() != key:
            return False  # e.g. $NETPOL_GUARD_BIN_CACHE holding an older build
    except OSError:
        return False
    return all(os.access(bin_dir / name, os.X_OK) for name in BINARY_NAMES)


@contextlib.contextmanager
def _locked(bin_dir: pathlib.Path) -> Iterator[None]:
    # Serialise concurrent builders (parallel test sessions) for the same dir.
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(bin_dir.parent / f".{bin_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fmt_elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def _download_modules(go: str, module: str) -> None:
    """Fetch the module graph up front so proxy problems get a clear error."""
    mod_dir = MODULES_DIR / module
    _log(f"downloading Go modules for controlplane/{module} (cached after first run)")
    proc = subprocess.run([go, "mod", "download"], cwd=mod_dir, env=_go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        proxy = _go_env().get("GOPROXY") or "https://proxy.golang.org,direct"
        raise BuildError(
            f"`go mod download` failed in controlplane/{module}; is the Go module proxy "
            f"reachable (GOPROXY={proxy})? {last}",
            exit_code=2,
        )


def _build_module(go: str, module: str, out_dir: pathlib.Path, log_path: pathlib.Path, gotmp: pathlib.Path) -> None:
    """Build all of one module's binaries in a single `go build`: on 2 cores this is
    ~1.5x faster cold than one invocation per binary, because the compiler keeps
    both cores busy across the three k8s link graphs instead of idling in each
    build's serial tail (big packages, linking)."""
    targets = [t for t in TARGETS if t.module == module]
    label = ", ".join(t.name for t in targets)
    cmd = [
        go, "build", "-v", "-trimpath", "-buildvcs=false",
        "-ldflags", _ldflags(module),
        "-o", str(out_dir) + os.sep,  # a directory: each main is written as <dir>/<base name>
        *(t.package for t in targets),
    ]  # fmt: skip
    start = time.monotonic()
    compiled: list[str] = []  # package paths reported by `go build -v`
    done = threading.Event()

    def heartbeat() -> None:
        # A cold kube-apiserver build is many minutes of silence otherwise.
        while not done.wait(HEARTBEAT_SECONDS):
            _log(
                f"  {label}: {_fmt_elapsed(time.monotonic() - start)} elapsed, "
                f"{len(compiled)} packages compiled (last: {compiled[-1] if compiled else '-'})"
            )

    _log(f"building {label} ...")
    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        with open(log_path, "a") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=MODULES_DIR / module,
                # go leaks its $WORK dir when interrupted; keep it inside our temp dir.
                env={**_go_env(), "GOTMPDIR": str(gotmp)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                assert proc.stdout is not None
                for line in proc.stdout:  # `-v` prints one package path per compiled package
                    log.write(line)
                    compiled.append(line.strip())
                rc = proc.wait()
            except BaseException:  # Ctrl-C / SIGTERM: don't leave `go build` running
                proc.terminate()  # lets go remove its $WORK temp dir; SIGKILL would leak it
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
    finally:
        done.set()
        ticker.join()
    if rc != 0:
        tail = log_path.read_text().splitlines()[-25:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise BuildError(f"building {label} failed (exit {rc}); full log: {log_path}")
    missing = [t.name for t in targets if not (out_dir / t.name).is_file()]
    if missing:
        raise BuildError(f"`go build` succeeded but did not produce {', '.join(missing)}")
    _log(f"built {label} in {_fmt_elapsed(time.monotonic() - start)}")


def _build_all(go: str, key: str, bin_dir: pathlib.Path) -> None:
    for module in _modules():
        _download_modules(go, module)
    # Leftovers of builds that were SIGKILLed; safe to remove as we hold the lock.
    for stale in bin_dir.parent.glob(f".{bin_dir.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    # Temp dir next to the destination so the final rename is atomic (same fs).
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{bin_dir.name}.tmp-", dir=bin_dir.parent))
    gotmp = tmp / ".gotmp"
    gotmp.mkdir()
    log_path = bin_dir.parent / f"{bin_dir.name}.build.log"
    log_path.write_text("")
    start = time.monotonic()
    try:
        for module in _modules():
            _build_module(go, module, tmp, log_path, gotmp)
        shutil.rmtree(gotmp)
        tmp.chmod(0o755)  # mkdtemp makes it 0700; let other users run the binaries
        (tmp / STAMP_NAME).write_text(key + "\n")  # written last: marks completeness
        old: pathlib.Path | None = None
        if bin_dir.exists():  # stale build (only possible with $NETPOL_GUARD_BIN_CACHE)
            old = bin_dir.with_name(f".{bin_dir.name}.old-{os.getpid()}")
            bin_dir.rename(old)
        tmp.rename(bin_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _log(f"all binaries built in {_fmt_elapsed(time.monotonic() - start)} -> {bin_dir}")


def find_binaries() -> pathlib.Path | None:
    """The cached binary directory if a complete, up-to-date build exists (never builds)."""
    key = cache_key(_go_version(_find_go()))
    bin_dir = cache_dir(key)
    return bin_dir if _is_complete(bin_dir, key) else None


def ensure_binaries(*, quiet: bool = False) -> pathlib.Path:
    """Return the directory holding etcd, kube-apiserver, kube-controller-manager
    and kubectl, building them first if the cache is missing or stale.

    Raises :class:`BuildError` on failure.
    """
    go = _find_go()
    key = cache_key(_go_version(go))
    bin_dir = cache_dir(key)
    if _is_complete(bin_dir, key):
        if not quiet:
            _log(f"binaries up to date (key {key}), skipping build: {bin_dir}")
        return bin_dir
    with _locked(bin_dir):
        if _is_complete(bin_dir, key):  # another process finished while we waited
            return bin_dir
        _log(f"cache miss (key {key}); building into {bin_dir} (a cold build takes a while)")
        _build_all(go, key, bin_dir)
    return bin_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print-dir", action="store_true", help="print only the binary directory on stdout")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # run the cleanup (temp dir, `go build` child)

    signal.signal(signal.SIGTERM, on_term)
    try:
        bin_dir = ensure_binaries()
    except BuildError as exc:
        print(f"build_binaries: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("build_binaries: interrupted", file=sys.stderr)
        return 130
    if args.print_dir:
        print(bin_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
