"""Every benchmark scenario runs end to end at a tiny size and produces its table rows.

Numbers are not checked (speed belongs in docs/benchmarks.md, not in assertions); what is
checked is that each scenario starts its real workers, gets every job of its tiny batch done,
and that the report renders a row per setup and a chart. The scenarios run in this process
against the session's redis-server (``jobq bench`` gives each its own).
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

from ops.bench.report import write_report
from ops.bench.runner import SCENARIOS


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_runs_end_to_end_and_reports_its_rows(name, redis_server, redis_client, tmp_path):
    module = importlib.import_module(SCENARIOS[name])

    result = module.run(redis_server, rounds=1, tiny=True, log_dir=tmp_path / "logs")

    rows = result["rows"]
    assert len(rows) >= 2
    assert any(row["setup"] == result["reference"] for row in rows)
    for row in rows:
        (run,) = row["runs"]
        for metric in result["metrics"]:
            assert not math.isnan(row["stats"][metric["key"]]["median"]), (row["label"], metric)
        # Nothing lost, nothing failed: the tiny batch finishes in every setup.
        assert run.get("done_fraction", 1.0) == 1.0, row["label"]
        assert run.get("unfinished", 0.0) == 0.0, row["label"]
        assert run.get("failed", 0.0) == 0.0, row["label"]

    out = tmp_path / "docs"
    (out / "bench").mkdir(parents=True)
    (out / "bench" / f"{name}.json").write_text(json.dumps(result))
    report = write_report(out, command=f"pytest {name}").read_text()
    for row in rows:
        assert f"| {row['label']} |" in report
    assert (out / f"bench-{name}.png").stat().st_size > 1000
    assert Path(out / "benchmarks.md").exists()
