"""`shopfloor demo` end to end on two quick tasks, including the simulated line (server + records)."""

import pytest

from shopfloor.demo import run_demo


@pytest.mark.slow
def test_demo_trains_serves_and_records(tmp_path):
    summaries = run_demo(tmp_path / "demo", only=["failure-prediction", "fault-diagnosis"])
    tasks = [s["task"] for s in summaries]
    assert tasks == ["failure-prediction", "fault-diagnosis", "line (serve + records)"]
    line = summaries[-1]
    assert line["requests"] == 2 and line["failed_requests"] == 0
    assert line["records"] == 21  # 20 process records + 1 vibration recording, each one record
    assert (tmp_path / "demo" / "line" / "records.db").is_file()
