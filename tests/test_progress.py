import re
import time

from cdml import progress
from cdml.progress import Progress


def test_logs_get_a_line_with_the_time_left_while_a_step_runs(monkeypatch, capsys):
    monkeypatch.setattr(progress, "REPORT_SECONDS", 0.01)
    with Progress("neighbours", total=35_000) as bar:
        bar.advance(12_288)
        time.sleep(0.1)
    err = capsys.readouterr().err
    assert re.search(r"^neighbours: 12,288 of 35,000 \(\d+ s, about \d+ s left\)$", err, re.M)


def test_a_blocking_call_gets_lines_with_its_estimate(monkeypatch, capsys):
    monkeypatch.setattr(progress, "REPORT_SECONDS", 0.01)
    with Progress("k-means", estimate=41.0):
        time.sleep(0.1)  # a library call that holds the main thread
    line = r"^k-means: \d+ s so far \(about 41 s in all\)$"
    assert re.search(line, capsys.readouterr().err, re.M)


def test_short_or_disabled_steps_print_nothing(monkeypatch, capsys):
    with Progress("embedding", total=3) as bar:
        bar.advance(3)
    monkeypatch.setattr(progress, "REPORT_SECONDS", 0.01)
    with Progress("embedding", total=3, enabled=False) as bar:
        time.sleep(0.05)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
