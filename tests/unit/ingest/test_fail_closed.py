"""Fail closed at the gate: a revocation list or nothing, bounded frames, sane policies."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ingest.camera import FolderSource, Frame
from ingest.decode import DEFAULT_MAX_PIXELS, FrameDecoder, ImageTooLarge, read_image
from ingest.gate import Gate, run_gate
from ingest.kiosk import GateIdentity, Kiosk
from ingest.passes import PassVerifier, RevocationList, add_revocation, generate_key
from ingest.spool import Spool
from processors.screening_policy import PolicyError, SitePolicies
from scantrail import contract
from scantrail.cli import cli
from scantrail.clock import FixedClock
from scantrail.errors import PassError, ScanTrailError
from sinks.lines import kiosk_health_line

NOW = datetime(2020, 2, 10, 8, 0, tzinfo=UTC)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )
    return path


# --- revocation lists ------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [None, "", '{"version": 1, "revoked": {"ps-1": {}', '{"revoked": {}}', '{"version": 1}',
     '{"version": 1, "revoked": ["ps-1"]}', "[]", "[" * 100_000],
)  # fmt: skip
def test_a_kiosk_cannot_load_a_missing_truncated_or_misshapen_list(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "revoked.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PassError):
        RevocationList(path).load()


def test_a_list_that_fails_to_refresh_keeps_the_last_good_one_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    add_revocation(path, "ps-000001", at=NOW, reason="lost")
    listing = RevocationList(path).load()
    assert listing.state()["revoked"] == 1 and listing.state()["error"] is None
    path.unlink()  # deleted by mistake: revoked passes must stay revoked
    assert "ps-000001" in listing.refresh()
    path.write_text('{"version": 1, "rev')
    assert "ps-000001" in listing.refresh()
    state = listing.state()
    assert state["revoked"] == 1 and "cannot read" in str(state["error"])
    assert state["refresh_failures"] == 2
    add_revocation(path.with_name("fresh.json"), "ps-000002", at=NOW, reason="lost")
    path.with_name("fresh.json").replace(path)
    assert listing.refresh() == frozenset({"ps-000002"}) and listing.last_error is None


def test_refresh_failures_and_decoder_limits_reach_the_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    add_revocation(path, "ps-000001", at=NOW, reason="lost")
    listing = RevocationList(path).load()
    spool = Spool(tmp_path / "spool.db")
    ticks = iter(range(0, 1000, 10))  # every clock read is 10 s later: always over budget
    decoder = FrameDecoder(max_pixels=100 * 100, budget_s=1.0, clock=lambda: float(next(ticks)))
    gate = Gate(
        Kiosk(GateIdentity("kiosk-1", "site-a"), spool),
        PassVerifier(generate_key().public_key(), listing),
        FixedClock(NOW),
        decoder=decoder,
    )
    path.write_text("{ half")
    listing.refresh()
    big = np.full((200, 200, 3), 235, dtype=np.uint8)
    small = np.full((72, 96, 3), 235, dtype=np.uint8)
    frames = [Frame(image=big, at=0.0, name="big"), Frame(image=small, at=0.1, name="small")]
    run_gate(gate, frames, heartbeat_s=30.0)
    beat = [
        e for e in (contract.decode(r.value) for r in spool.peek(100))
        if isinstance(e, contract.KioskHeartbeat)
    ][-1]  # fmt: skip
    assert beat.frames_too_large == 1 and beat.frames_over_budget == 1
    assert beat.revocations_error is not None and "cannot read" in beat.revocations_error
    line = kiosk_health_line(beat)
    assert "frames_too_large=1i" in line and "frames_over_budget=1i" in line
    assert "revocations_error=" in line


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SCANTRAIL_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> tuple[int, str]:
        """Exit code and output, as ``scantrail.cli.main`` gives them (ScanTrailError: one line)."""
        result = CliRunner().invoke(cli, list(args))
        if isinstance(result.exception, ScanTrailError):
            return 1, result.output + f"error: {result.exception}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    return invoke


def test_a_camera_kiosk_needs_a_list_or_an_explicit_none(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("pass", "keygen")
    key = str(tmp_path / "state" / "issuer" / "issuer.pub")
    (tmp_path / "frames").mkdir()
    base = ["kiosk", "--kiosk-id", "k1", "--site-id", "s1", "--source", "frames", "--pass-key", key]
    code, out = run(*base)
    assert code == 2 and "--no-revocations" in out
    code, out = run(*base, "--revocations", str(tmp_path / "nowhere.json"))
    assert code == 1 and "no readable revocation list" in out and "Traceback" not in out


def test_pass_verify_prints_the_lists_state_and_fails_closed(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("pass", "keygen")
    code, out = run("pass", "verify", "not a pass")
    state = json.loads(out)["revocations"]
    assert code == 0 and state["loaded"] and state["revoked"] == 0 and state["error"] is None
    (tmp_path / "state" / "issuer" / "revoked.json").write_text("{ truncated")
    code, out = run("pass", "verify", "not a pass")
    assert code == 1 and "cannot read revocation list" in out
    code, out = run("pass", "verify", "not a pass", "--no-revocations")
    assert code == 0 and json.loads(out)["revocations"].startswith("none")


# --- bounded decoding --------------------------------------------------------------


def test_images_over_the_pixel_limit_are_refused_from_their_header(tmp_path: Path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    assert bomb.stat().st_size < 1000
    with pytest.raises(ImageTooLarge, match="over the limit"):
        read_image(bomb)
    assert DEFAULT_MAX_PIXELS >= 3840 * 2160  # a 4K camera's frames pass
    folder = FolderSource(tmp_path)
    assert list(folder) == [] and folder.too_large == 1


def test_decode_command_reports_oversized_images_without_decoding(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bomb = png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    code, out = run("decode", str(bomb))
    record = json.loads(out.splitlines()[0])
    assert code == 0 and record["texts"] == [] and "over the limit" in record["error"]
    assert "1 over the pixel limit" in out
    small = png_header_only(tmp_path / "small.png", 50, 50)
    code, out = run("decode", str(small), "--max-pixels", "2000")
    assert "over the limit 2000" in json.loads(out.splitlines()[0])["error"]


# --- policies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "value", "field"),
    [
        ({"fever_c": float("nan")}, None, "fever_c"),
        ({"fever_c": float("inf")}, None, "fever_c"),
        ({"fever_c": 1e300}, None, "fever_c"),
        ({"fever_c": 10**400}, None, "fever_c"),
        ({"valid_max_c": 500.0}, None, "valid_max_c"),
        ({"anomaly_delta_c": float("nan")}, None, "anomaly_delta_c"),
        ({"remeasure_window": float("nan")}, None, "remeasure_window"),
        ({"remeasure_window": float("inf")}, None, "remeasure_window"),
        ({"remeasure_window": 1e300}, None, "remeasure_window"),
        ({"cluster_window": "99999999d"}, None, "cluster_window"),
        ({"fault_count": 10**30}, None, "fault_count"),
    ],
)
def test_policies_with_non_finite_or_out_of_range_numbers_are_refused_by_field(
    section: dict[str, object], value: object, field: str
) -> None:
    with pytest.raises(PolicyError, match=field):
        SitePolicies.from_mapping({"default": section})
    with pytest.raises(PolicyError, match=f"sites.s1.*{field}"):
        SitePolicies.from_mapping({"sites": {"s1": section}})


def test_screen_refuses_a_nan_policy_in_one_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "policy.yaml").write_text("default:\n  fever_c: .nan\n")
    (tmp_path / "in.jsonl").write_text("")
    code, out = run("screen", "in.jsonl", "--policy", "policy.yaml")
    assert code == 2 and "fever_c" in out and "Traceback" not in out
