"""Offline commands meet hostile input: one-line errors with line numbers, honest exit codes."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from scantrail.cli import cli
from scantrail.contract import ScanEvent, encode
from scantrail.jsonl import read_lines
from tests.factories import make_reading

CST = timezone(timedelta(hours=8))
T0 = datetime(2020, 2, 10, 8, 0, tzinfo=CST)

GOOD_SCAN = encode(
    ScanEvent(
        event_id="e1",
        kiosk_id="k1",
        site_id="s1",
        direction="in",
        person_id="idx",
        pass_status="valid",
        scanned_at=T0,
        seq=0,
    )
)


def scan_with(field: str, token: str) -> bytes:
    body = json.loads(GOOD_SCAN)
    body[field] = "@@"
    return json.dumps(body).replace('"@@"', token, 1).encode()


HOSTILE = [
    scan_with("seq", "9" * 5000),  # a 5,000-digit integer
    b"[" * 100_000 + b"]" * 100_000,  # 100,000 deep
    scan_with("scanned_at", '"0001-01-01T00:00:00+05:00"'),
    scan_with("scanned_at", '"9999-12-31T23:59:59-05:00"'),
    scan_with("seq", "NaN"),
    b"\xff\xfe not utf-8",
    b'{"schema": "scan/1", "x": "\\ud800"}',
]
SINCE = ["--since", "2020-02-10T00:00:00+08:00", "--until", "2020-02-11T00:00:00+08:00"]


def write(tmp_path: Path, lines: list[bytes], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: the test fails with it
    return result.exit_code, result.stdout, result.stderr


def reading_lines(n: int) -> list[bytes]:
    return [encode(make_reading(event_id=f"t{i}")) for i in range(n)]


@pytest.mark.parametrize("command", ["screen", "trace"])
def test_every_hostile_line_is_one_numbered_line_and_the_rest_is_used(
    tmp_path: Path, command: str
) -> None:
    lines = [GOOD_SCAN, *HOSTILE, GOOD_SCAN.replace(b'"e1"', b'"e2"')]
    path = write(tmp_path, lines)
    args = [command, str(path)] if command == "screen" else [command, "--scans", str(path)]
    if command == "trace":
        args += ["--person", "idx", *SINCE]
    code, _, err = run(*args)
    assert code == 0, err
    assert "Traceback" not in err
    numbered = [line for line in err.splitlines() if line.startswith("line ")]
    assert [int(line.split()[1].rstrip(":")) for line in numbered] == list(
        range(2, 2 + len(HOSTILE))
    )
    assert f"{len(HOSTILE)} bad line" in err or f"{len(HOSTILE)} invalid lines" in err


@pytest.mark.parametrize("command", ["screen", "trace"])
def test_a_file_of_only_bad_lines_exits_non_zero_with_the_count(
    tmp_path: Path, command: str
) -> None:
    path = write(tmp_path, HOSTILE)
    args = [command, str(path)] if command == "screen" else [command, "--scans", str(path)]
    if command == "trace":
        args += ["--person", "idx", *SINCE]
    code, _, err = run(*args)
    assert code == 1
    assert f"no usable line in {path} ({len(HOSTILE)} bad)" in err
    assert "Traceback" not in err


def test_screen_and_trace_number_lines_the_same_way(tmp_path: Path) -> None:
    # \r alone, form feeds and U+2028 are no line breaks for either command.
    lines = [b"\r", b"bad\x0cone", "x\u2028y".encode(), b"", b"bad two"]
    path = write(tmp_path, lines)
    _, _, screen_err = run("screen", str(path))
    _, _, trace_err = run("trace", "--scans", str(path), "--person", "idx", *SINCE)

    def numbers(err: str) -> list[str]:
        return [line.split(":")[0] for line in err.splitlines() if line.startswith("line ")]

    assert numbers(screen_err) == numbers(trace_err) == ["line 2", "line 3", "line 5"]


@pytest.mark.parametrize("command", ["screen", "trace"])
def test_lines_over_the_limit_are_refused_by_number_and_the_rest_read(
    tmp_path: Path, command: str
) -> None:
    path = write(tmp_path, [GOOD_SCAN, b'{"x": "' + b"y" * 5000 + b'"}', GOOD_SCAN])
    args = [command, str(path)] if command == "screen" else [command, "--scans", str(path)]
    if command == "trace":
        args += ["--person", "idx", *SINCE]
    code, _, err = run(*args, "--max-line-bytes", "1000")
    assert code == 0
    assert "line 2: line longer than 1000 bytes (5009 bytes)" in err


def test_a_huge_line_is_never_held_whole() -> None:
    class Counting(io.BytesIO):
        largest = 0

        def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
            data = super().readline(size)
            Counting.largest = max(Counting.largest, len(data))
            return data

    handle = Counting(b"a" * 5_000_000 + b"\nshort\n")
    lines = list(read_lines(handle, max_bytes=1000))
    assert [(line.number, line.data, line.length) for line in lines] == [
        (1, None, 5_000_000),
        (2, b"short", 5),
    ]
    assert Counting.largest <= 64 * 1024


@pytest.mark.parametrize("window", ["inf", "nan", "1e300", "-1", "20000", "x"])
def test_trace_refuses_windows_out_of_range(tmp_path: Path, window: str) -> None:
    path = write(tmp_path, [GOOD_SCAN])
    code, _, err = run(
        "trace", "--scans", str(path), "--person", "idx", *SINCE, "--window-minutes", window
    )
    assert code == 2 and "--window-minutes" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2300-01-01T00:00:00Z"]
)
def test_trace_refuses_dates_no_part_of_the_pipeline_represents(tmp_path: Path, since: str) -> None:
    path = write(tmp_path, [GOOD_SCAN])
    code, _, err = run(
        "trace", "--scans", str(path), "--person", "idx", "--since", since,
        "--until", "2020-02-11T00:00:00+08:00",
    )  # fmt: skip
    assert code == 2 and "outside" in err and "Traceback" not in err


@pytest.mark.parametrize("depth", ["0", "3", "-1"])
def test_trace_refuses_depths_out_of_range(tmp_path: Path, depth: str) -> None:
    path = write(tmp_path, [GOOD_SCAN])
    code, _, err = run("trace", "--scans", str(path), "--person", "idx", *SINCE, "--depth", depth)
    assert code == 2 and "--depth" in err


def test_screen_reads_good_readings_after_bad_ones(tmp_path: Path) -> None:
    path = write(tmp_path, [*HOSTILE, *reading_lines(3)])
    code, _, err = run("screen", str(path))
    assert code == 0 and "3 temperature/1" in err and f"{len(HOSTILE)} bad line" in err
