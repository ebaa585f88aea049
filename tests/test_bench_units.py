"""The benchmark harness's own plumbing: which code its services run, and
which runs it schedules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run, systems


def test_services_run_the_code_of_the_tree_the_benchmark_runs_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("ORDO_BATCH_DELAY_MS", "7")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = systems.service_env()
    assert "ORDO_BATCH_DELAY_MS" not in env
    assert env["PYTHONPATH"].split(os.pathsep) == [systems.ROOT, "/elsewhere"]
    assert (Path(systems.ROOT) / "bench" / "run.py").is_file()
    # A service starts in its data folder: ordo still comes from this tree.
    where = subprocess.run(
        [sys.executable, "-c", "import ordo, coordinator; print(ordo.__file__, coordinator.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert all(p.startswith(systems.ROOT + os.sep) for p in where), where


def _labels(*argv: str) -> list[str]:
    return [p.label for p in run.plans_for("put", run.parse_args(["--systems", "ordo", *argv]))]


def test_the_overload_runs_on_each_shard_count_that_has_a_run_to_compare_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _labels("--shards", "1,3")[-2:] == ["ordo-1@1000", "ordo-3@1000"]
    assert _labels("--shards", "3", "--overload-shards", "3,3,1") == ["ordo-3", "ordo-3@1000"]
    assert "no overload run on 1 shard(s)" in capsys.readouterr().err
    assert _labels("--shards", "1,3", "--overload", "0") == ["ordo-1", "ordo-3"]
    assert _labels("--shards", "3g", "--overload-shards", "3") == ["ordo-3-grpc"]
    with pytest.raises(SystemExit):
        run.parse_args(["--overload-shards", "0"])


def test_a_trace_folder_is_absolute_and_must_be_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = run.parse_args(["--systems", "ordo", "--trace", "traces"])
    assert args.trace == str(tmp_path / "traces")
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "put-ordo-3-r0").mkdir()
    with pytest.raises(SystemExit):
        run.parse_args(["--systems", "ordo", "--trace", "traces"])


def test_fault_runner_nodes_run_the_code_of_its_own_tree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    sys.path.insert(0, os.path.join(systems.ROOT, "jepsen-style"))
    try:
        from ordojepsen import cluster
    finally:
        sys.path.pop(0)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = cluster.node_env()
    assert env["PYTHONPATH"].split(os.pathsep) == [cluster.REPO, "/elsewhere"]
    assert cluster.REPO == systems.ROOT
    where = subprocess.run(
        [sys.executable, "-c", "import ordo; print(ordo.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert where.startswith(cluster.REPO + os.sep), where
