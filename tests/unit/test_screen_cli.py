"""``scantrail screen`` end to end through click: alerts out, bad lines reported."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from scantrail.cli import cli
from scantrail.contract import Alert, decode, encode
from tests.factories import BASE_TIME, make_quarantine, make_reading, make_scan

MIN = timedelta(minutes=1)


def run(tmp_path: Path, lines: list[str], *args: str) -> Result:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CliRunner().invoke(cli, ["screen", str(path), *args])


def alerts_of(result: Result) -> list[Alert]:
    out = []
    for line in result.stdout.splitlines():
        alert = decode(line, expect=Alert)
        assert isinstance(alert, Alert)
        out.append(alert)
    return out


def good_lines() -> list[str]:
    events = [
        make_reading(event_id="t-2", celsius=37.6, measured_at=BASE_TIME + 5 * MIN),
        make_scan(event_id="s-1", direction="out", scanned_at=BASE_TIME + 30 * MIN),
        make_reading(event_id="t-1", celsius=37.5),
        make_reading(event_id="t-3", celsius=38.0, person_id=None, measured_at=BASE_TIME),
        # quarantine comes last in the file but applies before the scan
        make_quarantine(starts_on=date(2020, 2, 10), ends_on=date(2020, 2, 24)),
    ]
    return [encode(e).decode() for e in events]


def test_screen_prints_sorted_alerts_as_json_lines(tmp_path: Path) -> None:
    result = run(tmp_path, good_lines())
    assert result.exit_code == 0, result.output
    alerts = alerts_of(result)
    assert [(a.kind, a.evidence) for a in alerts] == [
        ("fever_suspected", ["t-1"]),
        ("fever_unidentified", ["t-3"]),
        ("fever_confirmed", ["t-1", "t-2"]),
        ("quarantine_breach", ["s-1"]),
    ]
    assert all(a.raised_at == a.event_time for a in alerts)
    assert "0 bad line(s)" in result.stderr
    assert "4 alert(s)" in result.stderr


def test_bad_lines_are_reported_with_number_and_skipped(tmp_path: Path) -> None:
    alert_line = json.dumps(
        {
            "schema": "alert/1",
            "alert_id": "x",
            "kind": "x",
            "severity": "info",
            "site_id": "s",
            "event_time": "2020-02-10T09:00:00+08:00",
            "raised_at": "2020-02-10T09:00:00+08:00",
            "evidence": [],
        }
    )
    bad_celsius = json.loads(good_lines()[0])
    bad_celsius["celsius"] = "37.5"
    lines = [
        *good_lines()[:3],
        "{not json",
        "",
        json.dumps(bad_celsius),
        alert_line,
        '{"schema": "scan/9"}',
        good_lines()[3],
        good_lines()[4],
    ]
    result = run(tmp_path, lines)
    assert result.exit_code == 0
    errors = result.stderr.splitlines()
    assert errors[0].startswith("line 4: not JSON")
    assert errors[1].startswith("line 6: invalid temperature/1: celsius")
    assert errors[2] == "line 7: alert/1 is not a scan, temperature or quarantine"
    assert errors[3] == "line 8: unknown schema 'scan/9'"
    assert "4 bad line(s) skipped" in errors[-1]
    assert "1 quarantine/1, 1 scan/1, 3 temperature/1" in errors[-1]
    assert len(alerts_of(result)) == 4  # the good lines still screened


def test_policy_file_and_timezone(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("default:\n  fever_c: 38.5\nsites:\n  other: {fever_c: 37.0}\n")
    result = run(tmp_path, good_lines(), "--policy", str(policy), "--timezone", "UTC")
    assert result.exit_code == 0, result.output
    assert [a.kind for a in alerts_of(result)] == ["quarantine_breach"]


def test_bad_policy_is_a_usage_error(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("default:\n  fever: 38\n")
    result = run(tmp_path, good_lines(), "--policy", str(policy))
    assert result.exit_code == 2
    assert "unknown policy field 'fever'" in result.stderr
    result = run(tmp_path, good_lines(), "--timezone", "Nowhere/Town")
    assert result.exit_code == 2
    assert "unknown time zone" in result.stderr


def test_empty_file_prints_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, [])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "0 events; 0 alert(s); 0 bad line(s)" in result.stderr


def test_screen_is_listed_with_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "screen" in result.stdout
    result = CliRunner().invoke(cli, ["screen", "--help"])
    assert result.exit_code == 0
    assert "--timezone" in result.stdout and "--policy" in result.stdout
