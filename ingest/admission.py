"""Whether the person in front of a gate (or a phone at a posted code) may go in.

Pure: a pass verdict in, a decision with its reason and the words the gate or
the phone shows out. The scan itself is recorded whatever the decision, so an
officer sees a refused red code as well as a refused revoked pass; the
decision is only what the person is told at the gate.

Entry to parks and workplaces was for green codes only (field notes): yellow
and red are refused at the gate, with the colour's advice.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ingest.passes import Verdict

Language: TypeAlias = Literal["en", "zh-CN"]
LANGUAGES: tuple[Language, ...] = ("en", "zh-CN")

#: Health-code colours admitted by default (a pass without a colour is admitted).
ADMITTED_CODES: frozenset[str] = frozenset({"green"})

# reason -> (English, Chinese)
MESSAGES: dict[str, tuple[str, str]] = {
    "ok": ("Checked in. Thank you.", "登记成功，谢谢配合。"),
    "health_code_red": (
        "Red health code: entry refused. Go home and call your community office.",
        "健康码为红码：禁止进入。请回家并联系社区。",
    ),
    "health_code_yellow": (
        "Yellow health code: entry refused. Stay home and get a test.",
        "健康码为黄码：禁止进入。请居家并进行核酸检测。",
    ),
    "revoked": ("This pass has been revoked: entry refused.", "此通行证已被注销：禁止进入。"),
    "expired": (
        "This pass or code has expired: refresh it and try again.",
        "通行码已过期：请刷新后重试。",
    ),
    "forged": ("This pass is not valid: entry refused.", "通行证无效：禁止进入。"),
    "unknown": ("This is not a ScanTrail pass.", "这不是有效的通行证。"),
    "replayed": (
        "This code was already used: show a fresh code.",
        "此通行码已被使用：请出示新的通行码。",
    ),
    "not_a_token": (
        "Show the live code from your phone, not a paper pass.",
        "请出示手机上的实时通行码，而非纸质通行证。",
    ),
    "rate_limited": ("Too many attempts: wait a minute.", "尝试次数过多：请稍候一分钟。"),
    "venue_forged": ("This poster's code is not genuine.", "此场所码无效。"),
    "venue_expired": ("This poster's code has expired.", "此场所码已过期。"),
    "visitor_ok": ("Visitor registered. Thank you.", "访客登记成功，谢谢配合。"),
    "visitor_fever": (
        "Temperature too high: entry refused. Wait to be re-measured.",
        "体温过高：禁止进入。请等待复测。",
    ),
    "bad_input": ("Please check what you entered.", "请检查您输入的信息。"),
}


@dataclass(frozen=True)
class Admission:
    """The gate's answer: admit or not, why (a key of :data:`MESSAGES`)."""

    admit: bool
    reason: str

    def message(self, language: Language = "en") -> str:
        english, chinese = MESSAGES[self.reason]
        return chinese if language == "zh-CN" else english


def admit(verdict: Verdict, admitted_codes: Collection[str] = ADMITTED_CODES) -> Admission:
    """A valid pass with an admitted (or no) health-code colour goes in; nothing else does."""
    if verdict.status != "valid":
        return Admission(False, verdict.status)
    colour = verdict.health_code
    if colour is not None and colour not in admitted_codes:
        return Admission(False, f"health_code_{colour}")
    return Admission(True, "ok")


def pick_language(requested: str | None, accept_language: str | None) -> Language:
    """``?lang=`` first, then the browser's Accept-Language, else English."""
    for text in (requested, accept_language):
        if not text:
            continue
        for part in text.split(","):
            tag = part.split(";")[0].strip().lower()
            if tag.startswith("zh"):
                return "zh-CN"
            if tag.startswith("en"):
                return "en"
    return "en"
