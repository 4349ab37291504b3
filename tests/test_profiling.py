import csv
import io
import json

import pytest

from detaccel import profiling
from detaccel.profiling import timer as timer_module


@pytest.fixture
def fake_clock(monkeypatch):
    """perf_counter advancing by the amounts the test schedules."""
    state = {"now": 0.0}

    def advance(seconds):
        state["now"] += seconds

    monkeypatch.setattr(timer_module.time, "perf_counter", lambda: state["now"])
    return advance


def run_image(timer, clock, backbone, head, other=0.0):
    with timer.image():
        clock(other)
        with profiling.stage("backbone"):
            clock(backbone)
        with profiling.stage("head"):
            clock(head / 2)
            with profiling.stage("fc6"):
                clock(head / 2)


def test_stages_nest_and_warmup_images_are_dropped(fake_clock):
    timer = profiling.StageTimer(warmup=1)
    with timer.activate():
        run_image(timer, fake_clock, backbone=100.0, head=100.0)  # warm-up, discarded
        for backbone in (1.0, 2.0, 3.0, 4.0):
            run_image(timer, fake_clock, backbone=backbone, head=2.0, other=1.0)
    assert len(timer.images) == 4
    assert timer.stage_names() == ["backbone", "head/fc6", "head"]
    summary = timer.summary()
    assert summary["backbone"].mean == pytest.approx(2.5)
    assert summary["backbone"].p50 == pytest.approx(2.5)
    assert summary["head/fc6"].mean == pytest.approx(1.0)
    assert summary["total"].mean == pytest.approx(5.5)
    assert summary["backbone"].share + summary["head"].share == pytest.approx(4.5 / 5.5)
    assert summary["backbone"].p99 <= 4.0 and summary["backbone"].p90 >= summary["backbone"].p50


def test_without_an_active_timer_stages_do_nothing(fake_clock):
    assert profiling.active_timer() is None
    context = profiling.stage("backbone")
    assert context is profiling.stage("head")  # one shared no-op context
    with context:
        fake_clock(1.0)
    timer = profiling.StageTimer()
    with timer.activate():
        assert profiling.active_timer() is timer
    assert profiling.active_timer() is None
    assert timer.summary() == {}


def test_bad_use_is_reported():
    with pytest.raises(ValueError, match="warmup"):
        profiling.StageTimer(warmup=-1)
    timer = profiling.StageTimer()
    with pytest.raises(RuntimeError, match="cannot be nested"), timer.image(), timer.image():
        pass


def test_exports(fake_clock, tmp_path):
    timer = profiling.StageTimer()
    with timer.activate():
        for i in range(3):
            run_image(timer, fake_clock, backbone=0.01 * (i + 1), head=0.002)
    summary = timer.summary()
    rows = list(csv.DictReader(io.StringIO(profiling.summary_csv(summary))))
    assert [r["name"] for r in rows] == ["backbone", "head/fc6", "head", "total"]
    assert float(rows[0]["mean"]) == pytest.approx(0.02)
    table = profiling.summary_markdown(summary)
    assert "| backbone | 20.00 |" in table
    path = tmp_path / "bars.png"
    profiling.plot_stacked_bars({"fast": summary, "slow": summary}, path)
    assert path.stat().st_size > 1000


def test_chrome_trace_names_the_stages(tmp_path):
    import torch

    def work():
        with profiling.stage("backbone"):
            torch.ones(8, 8).sum()

    path = profiling.chrome_trace(work, tmp_path / "trace.json")
    events = json.loads(path.read_text())["traceEvents"]
    assert any(e.get("name") == "backbone" for e in events)
