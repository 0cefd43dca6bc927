"""Venue check-in by phone: the page a posted venue code opens.

A resident scans the poster (:mod:`ingest.venues`) with their phone; the page
takes the phone's live pass token (the one ``scantrail pass token`` prints),
and this server judges it exactly as a kiosk does, offline: issuer and device
signatures, revocation list, validity, token freshness. A check-in is then a
``scan/1`` event with the venue as kiosk and site, spooled through
:class:`ingest.kiosk.Kiosk` into the same durable SQLite spool a kiosk uses
and sent by the same :class:`ingest.publisher.SpoolPublisher`: an outage of
the broker delays check-ins, it never loses one.

What the server refuses, and counts (``GET /stats``):

* a forged or expired venue code (nothing is recorded: no venue, no scan);
* a token used before (a screenshot passed on): only the first use counts;
* a stale token, a revoked pass, a forged pass: recorded as the kiosk records
  them (officers see refused passes), and refused;
* more than ``per_pass`` check-ins of one pass within ``window_s`` (bursts of
  fresh tokens from one phone), and more than ``per_address`` requests from
  one address within ``window_s`` (checked first, before any signature work).

Red and yellow health codes are recorded and refused, as at a gate. Visitors
without a pass register with a phone number, which becomes a keyed hash
(:mod:`ingest.visitors`) before anything is stored.

The server binds to loopback by default: in a district it sits behind the
TLS front that the phones reach.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from ingest.admission import Admission, Language, admit, pick_language
from ingest.kiosk import GateIdentity, Kiosk, ScanExtras
from ingest.passes import TOKEN_PREFIX, PassVerifier
from ingest.spool import Spool
from ingest.venues import KIND_LABELS, Venue, verify_venue
from ingest.visitors import VisitorError, visitor_id
from scantrail.contract import ScanEvent

log = logging.getLogger(__name__)

#: Longer than any token can be accepted (120 s lifetime + skew on both ends).
REPLAY_MEMORY = timedelta(minutes=5)
FEVER_C = 37.3


@dataclass
class SlidingLimit:
    """At most ``limit`` events per key within ``window_s`` seconds (monotonic time)."""

    limit: int
    window_s: float
    max_keys: int = 100_000
    _hits: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._prune(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window_s]:
            del self._hits[key]
        while len(self._hits) >= self.max_keys:  # still full: forget the oldest keys
            del self._hits[next(iter(self._hits))]


@dataclass
class ReplayGuard:
    """Tokens already used, remembered until no clock could still accept them."""

    memory: timedelta = REPLAY_MEMORY
    _seen: dict[str, datetime] = field(default_factory=dict)

    def first_use(self, token: str, now: datetime) -> bool:
        for key in [k for k, at in self._seen.items() if at <= now - self.memory]:
            del self._seen[key]
        key = hashlib.sha256(token.encode()).hexdigest()
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


@dataclass(frozen=True)
class Outcome:
    """What the phone is shown, and what was recorded (None: nothing)."""

    admission: Admission
    venue: Venue | None = None
    scan: ScanEvent | None = None
    status: int = 200


@dataclass
class CheckinLimits:
    per_pass: int = 3
    per_address: int = 30
    window_s: float = 60.0


class CheckinService:
    """The check-in rules over one spool; synchronous, called from the web handlers."""

    def __init__(
        self,
        verifier: PassVerifier,
        spool: Spool,
        *,
        server_id: str = "checkin",
        limits: CheckinLimits | None = None,
        visitor_secret: bytes | None = None,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
    ) -> None:
        self.verifier = verifier
        self.spool = spool
        self.server_id = server_id
        self.limits = limits or CheckinLimits()
        self.by_pass = SlidingLimit(self.limits.per_pass, self.limits.window_s)
        self.by_address = SlidingLimit(self.limits.per_address, self.limits.window_s)
        self.replays = ReplayGuard()
        self.visitor_secret = visitor_secret
        self.clock = clock
        self.monotonic = monotonic
        self.counts: Counter[str] = Counter()
        self._kiosks: dict[str, Kiosk] = {}

    def _kiosk(self, venue: Venue) -> Kiosk:
        kiosk = self._kiosks.get(venue.venue_id)
        if kiosk is None:
            gate = GateIdentity(kiosk_id=venue.venue_id, site_id=venue.venue_id)
            prefix = f"{self.server_id}.{venue.venue_id}"
            kiosk = self._kiosks[venue.venue_id] = Kiosk(gate, self.spool, event_prefix=prefix)
        return kiosk

    def _refuse(self, reason: str, venue: Venue | None = None, status: int = 200) -> Outcome:
        self.counts[f"refused_{reason}"] += 1
        return Outcome(Admission(False, reason), venue, None, status)

    def _admit_request(self, code: str, address: str, now: datetime) -> Outcome:
        """Every request: the address's rate first (before any signature work), then the code.

        A refusal comes back refused; otherwise an admitted outcome with the venue.
        """
        if not self.by_address.allow(address, self.monotonic()):
            return self._refuse("rate_limited", status=429)
        verdict = verify_venue(code, issuer=self.verifier.issuer, now=now)
        if verdict.status != "valid" or verdict.venue is None:
            return self._refuse(f"venue_{verdict.status}", verdict.venue, status=400)
        return Outcome(Admission(True, "ok"), verdict.venue)

    def venue(self, code: str, address: str) -> Outcome:
        """Judge the venue code alone (the page a poster opens)."""
        return self._admit_request(code, address, self.clock())

    def check_in(self, code: str, token: str, address: str) -> Outcome:
        now = self.clock()
        opened = self._admit_request(code, address, now)
        venue = opened.venue
        if not opened.admission.admit or venue is None:
            return opened
        token = token.strip()
        if not token.startswith(TOKEN_PREFIX + "."):
            return self._refuse("not_a_token" if token.startswith("ST1.") else "unknown", venue)
        verdict = self.verifier.verify(token, now)
        if verdict.status == "unknown":
            return self._refuse("unknown", venue)
        if not self.replays.first_use(token, now):
            return self._refuse("replayed", venue)
        if verdict.pass_id is not None and not self.by_pass.allow(
            verdict.pass_id, self.monotonic()
        ):
            return self._refuse("rate_limited", venue, status=429)
        person = verdict.person_id or f"unknown-{hashlib.sha256(token.encode()).hexdigest()[:16]}"
        scan = self._kiosk(venue).record_scan(
            person_id=person,
            direction="in",
            pass_status=verdict.status,
            pass_id=verdict.pass_id,
            health_code=verdict.health_code,
            at=now,
            extra=ScanExtras(
                household_id=verdict.household_id,
                pass_kind=verdict.pass_kind,
                venue_kind=venue.kind,
                venue_site_id=venue.site_id,
            ),
        )
        decision = admit(verdict)
        self.counts["checked_in" if decision.admit else f"refused_{decision.reason}"] += 1
        return Outcome(decision, venue, scan)

    def register_visitor(
        self, code: str, phone: str, visiting: str, celsius_text: str, address: str
    ) -> Outcome:
        now = self.clock()
        opened = self._admit_request(code, address, now)
        venue = opened.venue
        if not opened.admission.admit or venue is None:
            return opened
        if self.visitor_secret is None:
            return self._refuse("bad_input", venue, status=503)
        try:
            who = visitor_id(phone, self.visitor_secret)
            celsius = float(celsius_text) if celsius_text.strip() else None
            if celsius is not None and not 25.0 <= celsius <= 45.0:
                raise ValueError("temperature out of range")
            host = visiting.strip() or None
            scan_kwargs = ScanExtras(venue_kind=venue.kind, venue_site_id=venue.site_id)
            if not self.by_pass.allow(who, self.monotonic()):
                return self._refuse("rate_limited", venue, status=429)
            scan, _ = self._kiosk(venue).record_visitor(
                visitor_id=who,
                direction="in",
                at=now,
                visiting=host,
                celsius=celsius,
                extra=scan_kwargs,
            )
        except (VisitorError, ValueError):
            return self._refuse("bad_input", venue, status=400)
        if celsius is not None and celsius >= FEVER_C:
            self.counts["refused_visitor_fever"] += 1
            return Outcome(Admission(False, "visitor_fever"), venue, scan)
        self.counts["visitors"] += 1
        return Outcome(Admission(True, "visitor_ok"), venue, scan)


# --- the pages ---------------------------------------------------------------------------

_TEXT: dict[str, tuple[str, str]] = {
    "title": ("Check in", "扫码登记"),
    "token": ("Your live pass code", "您的实时通行码"),
    "submit": ("Check in", "登记"),
    "visitor": ("No pass? Register as a visitor", "没有通行证？访客登记"),
    "phone": ("Phone number", "手机号码"),
    "visiting": ("Whom you visit (person or household id)", "拜访对象（人员或户号）"),
    "celsius": ("Temperature °C (if measured)", "体温 °C（如已测量）"),
    "register": ("Register", "登记"),
    "admitted": ("ADMITTED", "准予通行"),
    "refused": ("REFUSED", "禁止通行"),
    "back": ("Back", "返回"),
    "privacy": (
        "Only a pseudonymous id is kept, for 28 days.",
        "仅保存匿名编号，保存28天。",
    ),
}


def _t(key: str, language: Language) -> str:
    english, chinese = _TEXT[key]
    return chinese if language == "zh-CN" else english


_STYLE = """
body{margin:0;font-family:system-ui,"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;
background:#f4f6f8;color:#111}
main{max-width:30rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0}
.venue{color:#444;margin-bottom:1rem}
label{display:block;font-weight:600;margin-top:.8rem}
textarea,input{width:100%;box-sizing:border-box;font-size:1rem;padding:.6rem;margin-top:.3rem}
button{width:100%;font-size:1.2rem;padding:.9rem;margin-top:1rem;border:0;border-radius:.5rem;
background:#0b5cad;color:#fff}
.panel{border-radius:1rem;padding:2rem 1rem;text-align:center;color:#fff;margin:1rem 0}
.green{background:#1b873f}.red{background:#c62828}
.big{font-size:2.6rem;font-weight:800;letter-spacing:.1rem}
.msg{font-size:1.25rem;margin-top:1rem}
.small{font-size:.85rem;color:#555}
nav a{margin-right:1rem}
details{margin-top:1.5rem}
"""

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _page(body: str, language: Language, status: int = 200) -> web.Response:
    lang = "zh-CN" if language == "zh-CN" else "en"
    document = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>ScanTrail · {_t('title', language)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return web.Response(
        text=document, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def _venue_line(venue: Venue | None, language: Language) -> str:
    if venue is None:
        return ""
    english, chinese = KIND_LABELS[venue.kind]
    label = chinese if language == "zh-CN" else english
    return f'<div class="venue">{html.escape(venue.name or venue.venue_id)} · {label}</div>'


def _nav(code: str, language: Language) -> str:
    other: Language = "en" if language == "zh-CN" else "zh-CN"
    name = "English" if other == "en" else "中文"
    return f'<nav><a href="/v/{html.escape(code)}?lang={other}" id="lang">{name}</a></nav>'


def form_page(code: str, outcome: Outcome, language: Language, visitors: bool) -> web.Response:
    if not outcome.admission.admit:
        return result_page(code, outcome, language)
    safe = html.escape(code)
    visitor_form = ""
    if visitors:
        visitor_form = (
            f"<details><summary>{_t('visitor', language)}</summary>"
            f'<form method="post" action="/v/{safe}/visitor?lang={language}">'
            f'<label for="phone">{_t("phone", language)}</label>'
            '<input id="phone" name="phone" type="tel" autocomplete="tel" required>'
            f'<label for="visiting">{_t("visiting", language)}</label>'
            '<input id="visiting" name="visiting">'
            f'<label for="celsius">{_t("celsius", language)}</label>'
            '<input id="celsius" name="celsius" inputmode="decimal">'
            f'<button type="submit" id="register">{_t("register", language)}</button>'
            f'<p class="small">{_t("privacy", language)}</p></form></details>'
        )
    body = (
        f"{_nav(code, language)}<h1>{_t('title', language)}</h1>"
        f"{_venue_line(outcome.venue, language)}"
        f'<form method="post" action="/v/{safe}/checkin?lang={language}">'
        f'<label for="token">{_t("token", language)}</label>'
        '<textarea id="token" name="token" rows="4" required autocomplete="off"></textarea>'
        f'<button type="submit" id="submit">{_t("submit", language)}</button></form>'
        f"{visitor_form}"
    )
    return _page(body, language)


def result_page(code: str, outcome: Outcome, language: Language) -> web.Response:
    admitted = outcome.admission.admit
    colour = "green" if admitted else "red"
    word = _t("admitted" if admitted else "refused", language)
    mark = "✓" if admitted else "✗"
    when = ""
    if outcome.scan is not None:
        when = f'<div class="small">{outcome.scan.scanned_at:%Y-%m-%d %H:%M:%S} UTC</div>'
    body = (
        f'<div class="panel {colour}" id="result" data-admit="{str(admitted).lower()}" '
        f'data-reason="{html.escape(outcome.admission.reason)}">'
        f'<div class="big">{mark} {word}</div>'
        f'<div class="msg">{html.escape(outcome.admission.message(language))}</div></div>'
        f"{_venue_line(outcome.venue, language)}{when}"
        f'<p><a href="/v/{html.escape(code)}?lang={language}">{_t("back", language)}</a></p>'
    )
    return _page(body, language, outcome.status)


SERVICE_KEY: web.AppKey[CheckinService] = web.AppKey("service", CheckinService)


def make_app(
    service: CheckinService, *, on_cleanup: Callable[[], None] | None = None
) -> web.Application:
    """The aiohttp application; spool writes run in a thread, off the event loop."""
    app = web.Application(client_max_size=16 * 1024)
    app[SERVICE_KEY] = service

    def language_of(request: web.Request) -> Language:
        return pick_language(request.query.get("lang"), request.headers.get("Accept-Language"))

    def address_of(request: web.Request) -> str:
        return request.remote or "?"

    async def run(fn: Callable[..., Outcome], *args: Any) -> Outcome:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def venue_page(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        outcome = await run(service.venue, code, address_of(request))
        return form_page(code, outcome, language_of(request), service.visitor_secret is not None)

    async def checkin(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        form = await request.post()
        token = str(form.get("token", ""))[:4096]
        outcome = await run(service.check_in, code, token, address_of(request))
        return result_page(code, outcome, language_of(request))

    async def visitor(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        form = await request.post()
        fields = [str(form.get(name, ""))[:200] for name in ("phone", "visiting", "celsius")]
        outcome = await run(service.register_visitor, code, *fields, address_of(request))
        return result_page(code, outcome, language_of(request))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"counts": dict(sorted(service.counts.items())), "spool_depth": service.spool.depth()}
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/v/{code}", venue_page)
    app.router.add_post("/v/{code}/checkin", checkin)
    app.router.add_post("/v/{code}/visitor", visitor)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", health)
    if on_cleanup is not None:

        async def cleanup(app: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, on_cleanup)

        app.on_cleanup.append(cleanup)
    return app
