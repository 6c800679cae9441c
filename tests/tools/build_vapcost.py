#!/usr/bin/env python3
"""Build (and cache) vapcost: the API server's admission CEL run on objects, printing runtime costs.

The API server refuses a ValidatingAdmissionPolicy evaluation past its CEL cost limits but never says
how close an object came; vapcost (tests/tools/vapcost/main.go) compiles and runs the policies with
the same k8s.io/apiserver code as the e2e control plane and prints each validation's cost. Built from
the Go module pinned in ``tests/tools/vapcost/go.mod``; cache
``${XDG_CACHE_HOME:-~/.cache}/netpol-guard/vapcost/<key>/vapcost`` (see tests/tools/gotool.py).

Usage: ``python tests/tools/build_vapcost.py [--print-path]``; Python callers use :func:`ensure_vapcost`.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gotool import BuildError, GoTool

VAPCOST = GoTool("vapcost", pathlib.Path(__file__).resolve().parent / "vapcost", ".")
__all__ = ["VAPCOST", "BuildError", "ensure_vapcost", "measure"]


def ensure_vapcost() -> pathlib.Path:
    """The path of the vapcost binary, building it first when the cache is missing or stale."""
    return VAPCOST.ensure()


def measure(policies: list[dict[str, Any]], objects: dict[str, dict[str, Any]],
            work_dir: pathlib.Path) -> list[dict[str, Any]]:
    """vapcost's results (one per object and policy, `object` the object's name) for the
    ValidatingAdmissionPolicies among `policies` on `objects` (name -> object)."""
    import yaml

    policy_file = work_dir / "policies.yaml"
    policy_file.write_text(yaml.safe_dump_all(d for d in policies if d["kind"] == "ValidatingAdmissionPolicy"))
    paths = []
    for name, obj in objects.items():
        path = work_dir / f"{name}.json"
        path.write_text(json.dumps(obj))
        paths.append(str(path))
    proc = subprocess.run([str(ensure_vapcost()), str(policy_file), *paths], capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        raise BuildError(f"vapcost failed: {proc.stderr.strip()}")
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    for result in results:
        result["object"] = pathlib.Path(result["object"]).stem
    return results


if __name__ == "__main__":
    sys.exit(VAPCOST.main(__doc__.split("\n\n")[0]))
