"""The committed code in ordo/v1 is what `make proto` generates from proto/."""

from __future__ import annotations

import filecmp
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_matches_the_protos(tmp_path: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto/ordo/v1").glob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", *protos],
        cwd=ROOT, check=True,
    )
    generated = sorted(p.name for p in (tmp_path / "ordo/v1").iterdir())
    assert generated, "protoc generated nothing"
    stale = [
        name for name in generated
        if not (ROOT / "ordo/v1" / name).exists()
        or not filecmp.cmp(tmp_path / "ordo/v1" / name, ROOT / "ordo/v1" / name, shallow=False)
    ]
    assert not stale, f"run `make proto`: stale generated files {stale}"
