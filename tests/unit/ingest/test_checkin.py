"""Venue codes, visitor ids, the gate's admission and the check-in rules (spool on disk, no broker)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest.admission import admit, pick_language
from ingest.checkin import CheckinLimits, CheckinService, SlidingLimit, make_app
from ingest.passes import (
    GatePass,
    PassVerifier,
    Verdict,
    issue_pass,
    issue_token,
    public_key_bytes,
    verify_pass,
)
from ingest.spool import Spool
from ingest.venues import Venue, checkin_url, issue_venue, verify_venue, write_poster
from ingest.visitors import VisitorError, normalise_shown, visitor_id
from scantrail.contract import ScanEvent, decode_as

NOW = datetime(2020, 2, 10, 1, 0, tzinfo=UTC)
SECRET = b"district-7-visitor-secret"


@dataclass
class World:
    issuer: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    device: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    now: datetime = NOW
    mono: float = 1000.0

    def pass_text(self, person: str = "p-001", health: str | None = "green", **kw: object) -> str:
        gate_pass = GatePass(
            pass_id=f"ps-{person}",
            person_id=person,
            site_id="site-1",
            household_id="hh-1",
            valid_from=NOW - timedelta(days=1),
            valid_until=NOW + timedelta(days=13),
            health_code=health,  # type: ignore[arg-type]
            device_key=public_key_bytes(self.device),
            **kw,  # type: ignore[arg-type]
        )
        return issue_pass(gate_pass, self.issuer)

    def token(self, pass_text: str, at: datetime | None = None) -> str:
        return issue_token(pass_text, self.device, at or self.now)

    def venue_code(self, kind: str = "market", **kw: object) -> str:
        venue = Venue(
            venue_id="market-01",
            site_id="site-1",
            kind=kind,  # type: ignore[arg-type]
            valid_from=NOW - timedelta(days=1),
            valid_until=NOW + timedelta(days=30),
            name="东门菜市场",
            **kw,  # type: ignore[arg-type]
        )
        return issue_venue(venue, self.issuer)

    def service(self, spool: Spool, **limits: float) -> CheckinService:
        return CheckinService(
            PassVerifier(self.issuer.public_key()),
            spool,
            server_id="checkin-t",
            limits=CheckinLimits(**limits),  # type: ignore[arg-type]
            visitor_secret=SECRET,
            clock=lambda: self.now,
            monotonic=lambda: self.mono,
        )


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.db")


def spooled_scans(spool: Spool) -> list[ScanEvent]:
    return [decode_as(row.value, ScanEvent) for row in spool.peek() if row.topic.endswith("scans")]


# --- venue codes ---------------------------------------------------------------------------


def test_venue_code_round_trip_and_forgeries(world: World) -> None:
    code = world.venue_code()
    good = verify_venue(code, issuer=world.issuer.public_key(), now=NOW)
    assert good.status == "valid" and good.venue is not None
    assert (good.venue.venue_id, good.venue.kind, good.venue.name) == (
        "market-01",
        "market",
        "东门菜市场",
    )
    other = Ed25519PrivateKey.generate()
    assert verify_venue(code, issuer=other.public_key(), now=NOW).status == "forged"
    prefix, payload, sig = code.split(".")
    tampered = f"{prefix}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{sig}"
    assert verify_venue(tampered, issuer=world.issuer.public_key(), now=NOW).status == "forged"
    assert verify_venue("hello", issuer=world.issuer.public_key(), now=NOW).status == "forged"
    late = NOW + timedelta(days=31)
    assert verify_venue(code, issuer=world.issuer.public_key(), now=late).status == "expired"
    # a pass is not a venue code, though signed by the same issuer
    pass_as_venue = "STV1." + ".".join(world.pass_text().split(".")[1:])
    assert verify_venue(pass_as_venue, issuer=world.issuer.public_key(), now=NOW).status == "forged"


def test_poster_is_a_one_page_pdf(world: World, tmp_path: Path) -> None:
    code = world.venue_code()
    verdict = verify_venue(code, issuer=world.issuer.public_key(), now=NOW)
    assert verdict.venue is not None
    url = checkin_url("http://127.0.0.1:8090", code)
    assert url.startswith("http://127.0.0.1:8090/v/STV1.")
    poster = write_poster(verdict.venue, code, url, tmp_path / "poster.pdf")
    assert poster.read_bytes().startswith(b"%PDF")
    # printed and scanned: the poster's QR opens the check-in page of this venue
    import shutil
    import subprocess

    import cv2

    from ingest.decode import FrameDecoder

    if not shutil.which("pdftoppm"):
        pytest.fail("pdftoppm is missing: run `make install` (deploy/local/system-deps.sh)")
    png = tmp_path / "poster"
    subprocess.run(
        ["pdftoppm", "-r", "100", "-png", "-singlefile", str(poster), str(png)], check=True
    )
    image = cv2.imread(str(png) + ".png", cv2.IMREAD_COLOR)
    assert FrameDecoder().decode(image) == [url]


# --- visitors, admission -------------------------------------------------------------------


def test_visitor_id_is_keyed_stable_and_hides_the_number() -> None:
    a = visitor_id("+86 138-0013-8000", SECRET)
    assert a == visitor_id("008613800138000", SECRET) == visitor_id("+8613800138000", SECRET)
    assert a.startswith("v-") and len(a) == 34
    assert "13800138000" not in a
    assert visitor_id("+8613800138000", b"another-district-secret!") != a
    with pytest.raises(VisitorError):
        normalise_shown("call me")
    with pytest.raises(VisitorError):
        visitor_id("+8613800138000", b"short")


@pytest.mark.parametrize(
    ("status", "colour", "expected"),
    [
        ("valid", "green", (True, "ok")),
        ("valid", None, (True, "ok")),
        ("valid", "yellow", (False, "health_code_yellow")),
        ("valid", "red", (False, "health_code_red")),
        ("revoked", "green", (False, "revoked")),
        ("expired", "green", (False, "expired")),
    ],
)
def test_admission(status: str, colour: str | None, expected: tuple[bool, str]) -> None:
    decision = admit(Verdict(status=status, reason="", health_code=colour))  # type: ignore[arg-type]
    assert (decision.admit, decision.reason) == expected
    assert decision.message("zh-CN") != decision.message("en")


def test_language_choice() -> None:
    assert pick_language("zh-CN", "en") == "zh-CN"
    assert pick_language(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert pick_language(None, "fr-FR,en;q=0.5") == "en"
    assert pick_language(None, None) == "en"


def test_sliding_limit() -> None:
    limit = SlidingLimit(limit=2, window_s=60)
    assert [limit.allow("a", t) for t in (0, 1, 2)] == [True, True, False]
    assert limit.allow("b", 2)
    assert limit.allow("a", 60.5)  # the first hit left the window


def test_pass_kind_is_signed_and_optional(world: World) -> None:
    worker = world.pass_text(kind="worker")
    plain = world.pass_text()
    key = world.issuer.public_key()
    assert verify_pass(world.token(worker), issuer=key, revoked=(), now=NOW).pass_kind == "worker"
    assert verify_pass(world.token(plain), issuer=key, revoked=(), now=NOW).pass_kind is None


# --- the check-in rules --------------------------------------------------------------------


def test_a_check_in_is_a_spooled_scan_at_the_venue(world: World, spool: Spool) -> None:
    service = world.service(spool)
    outcome = service.check_in(world.venue_code(), world.token(world.pass_text()), "10.0.0.1")
    assert outcome.admission.admit
    [scan] = spooled_scans(spool)
    assert (scan.kiosk_id, scan.site_id, scan.venue_kind, scan.venue_site_id) == (
        "market-01",
        "market-01",
        "market",
        "site-1",
    )
    assert (scan.person_id, scan.household_id, scan.direction, scan.pass_status) == (
        "p-001",
        "hh-1",
        "in",
        "valid",
    )
    assert scan.event_id.startswith("checkin-t.market-01-s")
    assert service.counts == {"checked_in": 1}


def test_replayed_stale_and_forged_are_refused_and_counted(world: World, spool: Spool) -> None:
    service = world.service(spool)
    code, text = world.venue_code(), world.pass_text()
    token = world.token(text)
    assert service.check_in(code, token, "a").admission.admit
    assert service.check_in(code, token, "a").admission.reason == "replayed"
    stale = world.token(text, at=NOW - timedelta(minutes=5))
    assert service.check_in(code, stale, "a").admission.reason == "expired"
    other = Ed25519PrivateKey.generate()
    forged_code = issue_venue(
        Venue("market-01", "site-1", "market", NOW - timedelta(days=1), NOW + timedelta(days=1)),
        other,
    )
    refused = service.check_in(forged_code, world.token(text, NOW + timedelta(seconds=1)), "a")
    assert (refused.admission.reason, refused.status, refused.scan) == ("venue_forged", 400, None)
    assert service.check_in(code, text, "a").admission.reason == "not_a_token"
    assert service.counts == {
        "checked_in": 1,
        "refused_replayed": 1,
        "refused_expired": 1,
        "refused_venue_forged": 1,
        "refused_not_a_token": 1,
    }
    # the stale token is recorded as a kiosk records it; the replay and the forgery are not
    assert [s.pass_status for s in spooled_scans(spool)] == ["valid", "expired"]


def test_bursts_per_pass_and_per_address_are_limited(world: World, spool: Spool) -> None:
    service = world.service(spool, per_pass=2, per_address=4, window_s=60)
    code, text = world.venue_code(), world.pass_text()
    reasons = []
    for i in range(4):  # four fresh tokens from one phone within a minute
        world.now = NOW + timedelta(seconds=i)
        reasons.append(service.check_in(code, world.token(text), "addr-1").admission.reason)
    assert reasons == ["ok", "ok", "rate_limited", "rate_limited"]
    assert service.check_in(code, world.token(world.pass_text("p-002")), "addr-1").status == 429
    assert service.counts["refused_rate_limited"] == 3  # two by pass, one by address
    world.mono += 61
    world.now += timedelta(seconds=1)  # a token of the same second is the same token
    assert service.check_in(code, world.token(text), "addr-1").admission.admit


def test_red_code_is_recorded_and_refused(world: World, spool: Spool) -> None:
    service = world.service(spool)
    outcome = service.check_in(world.venue_code(), world.token(world.pass_text(health="red")), "a")
    assert (outcome.admission.admit, outcome.admission.reason) == (False, "health_code_red")
    assert [s.health_code for s in spooled_scans(spool)] == ["red"]


def test_visitor_registration_keeps_only_the_hash(world: World, spool: Spool) -> None:
    service = world.service(spool)
    outcome = service.register_visitor(
        world.venue_code(), "+86 138 0013 8000", "p-001", "38.1", "a"
    )
    assert outcome.admission.reason == "visitor_fever"
    rows = spool.peek()
    assert all(b"13800138000" not in row.value for row in rows)
    scan = spooled_scans(spool)[0]
    assert scan.person_id == visitor_id("+8613800138000", SECRET)
    assert (scan.person_kind, scan.visiting, scan.pass_status) == ("visitor", "p-001", "unknown")
    readings = [json.loads(r.value) for r in rows if r.topic.endswith("temperatures")]
    assert [(r["person_id"], r["celsius"], r["scan_event_id"]) for r in readings] == [
        (scan.person_id, 38.1, scan.event_id)
    ]
    assert service.register_visitor(world.venue_code(), "nope", "", "", "a").status == 400


def test_pages_over_http(world: World, spool: Spool) -> None:
    """The real aiohttp server on a loopback port: form page, green page, red page, stats."""
    service = world.service(spool)
    code = world.venue_code()

    async def scenario() -> list[tuple[int, str]]:
        runner = web.AppRunner(make_app(service))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        out = []
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/v/{code}?lang=zh-CN") as r:
                    out.append((r.status, await r.text()))
                token = world.token(world.pass_text())
                async with http.post(f"{base}/v/{code}/checkin", data={"token": token}) as r:
                    out.append((r.status, await r.text()))
                async with http.post(
                    f"{base}/v/{code}/checkin?lang=zh-CN", data={"token": token}
                ) as r:
                    out.append((r.status, await r.text()))
                async with http.get(f"{base}/stats") as r:
                    out.append((r.status, await r.text()))
        finally:
            await runner.cleanup()
        return out

    (s1, form), (s2, green), (s3, red), (s4, stats) = asyncio.run(scenario())
    assert s1 == 200 and "扫码登记" in form and 'name="token"' in form and "东门菜市场" in form
    assert s2 == 200 and 'data-admit="true"' in green and "ADMITTED" in green
    assert s3 == 200 and 'data-reason="replayed"' in red and "禁止通行" in red
    assert json.loads(stats)["counts"] == {"checked_in": 1, "refused_replayed": 1}


def test_kiosk_registers_a_visitor_into_its_spool(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scantrail.cli import cli

    spool_path = tmp_path / "kiosk.db"
    args = ["visitor", "--kiosk-id", "kiosk-007", "--site-id", "site-1", "--phone", "138 0013 8000"]
    args += ["--visiting", "hh-12", "--celsius", "36.4", "--spool", str(spool_path)]
    args += ["--publish-timeout", "0"]
    refused = CliRunner().invoke(cli, args, env={"SCANTRAIL_VISITOR_SECRET": ""})
    assert refused.exit_code != 0 and "SCANTRAIL_VISITOR_SECRET" in refused.output
    result = CliRunner().invoke(cli, args, env={"SCANTRAIL_VISITOR_SECRET": SECRET.decode()})
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["person_id"] == visitor_id("13800138000", SECRET) and out["spool_depth"] == 2
    spool = Spool(spool_path)
    [scan] = spooled_scans(spool)
    assert (scan.kiosk_id, scan.person_kind, scan.visiting) == ("kiosk-007", "visitor", "hh-12")
    assert all(b"13800138000" not in row.value for row in spool.peek())


def test_venue_issue_command_signs_a_code_the_issuer_key_verifies(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ingest.passes import load_public_key
    from scantrail.cli import cli

    env = {"SCANTRAIL_STATE": str(tmp_path / "state")}
    runner = CliRunner()
    assert runner.invoke(cli, ["pass", "keygen"], env=env).exit_code == 0
    args = ["venue", "issue", "--venue-id", "pharmacy-3", "--site", "site-2", "--kind", "pharmacy"]
    args += ["--name", "大药房", "--out", str(tmp_path / "venues")]
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["url"] == checkin_url("http://127.0.0.1:8090", out["code"])
    assert Path(out["poster"]).read_bytes().startswith(b"%PDF")
    key = load_public_key(tmp_path / "state" / "issuer" / "issuer.pub")
    verdict = verify_venue(out["code"], issuer=key, now=datetime.now(UTC))
    assert verdict.venue is not None
    assert (verdict.status, verdict.venue.kind, verdict.venue.name) == (
        "valid",
        "pharmacy",
        "大药房",
    )
