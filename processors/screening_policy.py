"""The numbers behind the fever and gate rules, as frozen values per site.

Every threshold and window the rules use lives in :class:`ScreeningPolicy`, so
a site that screens at 37.5 °C (or sits in another time zone) changes data, not
code. :class:`SitePolicies` holds the default and per-site overrides; the shell
builds it from a YAML file or settings and hands it down, the rule modules
never read configuration themselves.

Local dates (quarantine days, baseline days, one anomaly per day) are taken in
the policy's IANA time zone, because a gate in Shanghai closes its day at
16:00 UTC, not at midnight UTC.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scantrail.errors import ScanTrailError

DEFAULT_TIMEZONE = "Asia/Shanghai"

# Temperatures are compared after rounding differences to this many decimals,
# so 36.2 + 0.8 counts as 37.0 and not as 36.99999999999999.
PRECISION = 6


class PolicyError(ScanTrailError, ValueError):
    """A screening policy value is missing, unknown or out of range."""


#: Bounds every policy number must respect (the file is refused otherwise, the
#: field named): NaN would silently disable a rule, inf or 1e300 overflow it.
MAX_DURATION = timedelta(days=366)
MAX_COUNT = 1_000_000
_FLOAT_RANGES = {  # temperatures default to the contract's -50..100 °C
    "anomaly_delta_c": (0.0, 20.0),
    "drift_delta_c": (0.0, 20.0),
}


@dataclass(frozen=True, kw_only=True)
class ScreeningPolicy:
    """Thresholds and windows of the screening rules (defaults: Chinese gates, 2020).

    Parameters (°C, counts, and :class:`~datetime.timedelta` windows):

    * ``timezone`` – IANA zone in which local dates are taken.
    * ``valid_min_c``/``valid_max_c`` – plausible range; outside is a sensor or
      placement error that never counts as fever or as normal.
    * ``fever_c`` – a valid reading at or above it is a fever reading.
    * ``remeasure_window`` – how long a suspicion waits for its re-measure.
    * ``fault_count``/``fault_window``/``fault_cooldown`` – invalid readings per
      kiosk that make a ``sensor_fault``, and the quiet time after one.
    * ``baseline_days``/``baseline_min_dates``/``anomaly_delta_c`` – personal
      baseline history, how many distinct days it needs, and the rise over its
      median that is an anomaly.
    * ``cluster_persons``/``cluster_window``/``cluster_cooldown`` – confirmed
      persons per site that make a ``fever_cluster``.
    * ``drift_window``/``drift_min_readings``/``drift_delta_c``/``drift_cooldown``
      – kiosk-versus-site median comparison for ``sensor_drift``.
    * ``seen_horizon``/``seen_max`` – how long (and how many) event ids each
      shard remembers to ignore duplicates.
    * ``outing_quota``/``outing_window``/``outing_exempt_pass_kinds`` – how many
      distinct persons of one household may have an ``out`` scan within the
      window (one person every two days), and the pass kinds (a worker's pass)
      that the rule neither counts nor judges.
    * ``late_quarantine_window`` – how long each person's ``out`` scans are kept
      so that a quarantine order arriving after them (published late with a
      past start date, or read after them by a worker catching up) still
      raises ``quarantine_breach`` for those it covers, as it would have had it
      come first.
    * ``health_codes_alerted`` – the health-code colours that raise an alert at
      any scan (``health_code_yellow``, ``health_code_red``); empty switches it off.
    """

    timezone: str = DEFAULT_TIMEZONE
    valid_min_c: float = 34.0
    valid_max_c: float = 42.0
    fever_c: float = 37.3
    remeasure_window: timedelta = timedelta(minutes=20)
    fault_count: int = 3
    fault_window: timedelta = timedelta(minutes=10)
    fault_cooldown: timedelta = timedelta(minutes=10)
    baseline_days: int = 14
    baseline_min_dates: int = 3
    anomaly_delta_c: float = 0.8
    cluster_persons: int = 3
    cluster_window: timedelta = timedelta(hours=24)
    cluster_cooldown: timedelta = timedelta(hours=24)
    drift_window: timedelta = timedelta(hours=1)
    drift_min_readings: int = 20
    drift_delta_c: float = 0.7
    drift_cooldown: timedelta = timedelta(hours=1)
    seen_horizon: timedelta = timedelta(hours=24)
    # Each shard's duplicate filter travels inside its state record; 100,000 ids
    # would outgrow Kafka's 1 MB record limit at a busy site within a day.
    # Re-deliveries come from reprocessing after a crash (minutes), so the last
    # 5,000 ids per shard are plenty.
    seen_max: int = 5_000
    outing_quota: int = 1
    outing_window: timedelta = timedelta(hours=48)
    outing_exempt_pass_kinds: tuple[str, ...] = ("worker",)
    health_codes_alerted: tuple[str, ...] = ("yellow", "red")
    late_quarantine_window: timedelta = timedelta(days=14)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", _zone(self.timezone))
        if not self.valid_min_c < self.valid_max_c:
            raise PolicyError("valid_min_c must be below valid_max_c")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, timedelta) and not timedelta(0) < value <= MAX_DURATION:
                raise PolicyError(f"{f.name} must be a positive duration of at most 366 days")
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and not 1 <= value <= MAX_COUNT
            ):
                raise PolicyError(f"{f.name} must be between 1 and {MAX_COUNT}")
            if isinstance(value, float):
                low, high = _FLOAT_RANGES.get(f.name, (-50.0, 100.0))
                if not (math.isfinite(value) and low <= value <= high):
                    raise PolicyError(f"{f.name} must be a finite number from {low:g} to {high:g}")
        if self.anomaly_delta_c < 0 or self.drift_delta_c < 0:
            raise PolicyError("anomaly_delta_c and drift_delta_c must not be negative")
        unknown = set(self.health_codes_alerted) - {"green", "yellow", "red"}
        if unknown:
            raise PolicyError(f"health_codes_alerted: unknown colour(s) {sorted(unknown)}")

    @property
    def baseline_span(self) -> timedelta:
        return timedelta(days=self.baseline_days)

    def local_date(self, when: datetime) -> date:
        """The calendar date of ``when`` at the site."""
        return when.astimezone(self.zone).date()

    def is_valid(self, celsius: float) -> bool:
        return self.valid_min_c <= celsius <= self.valid_max_c

    def is_fever(self, celsius: float) -> bool:
        """A *valid* reading at or above the threshold."""
        return self.is_valid(celsius) and celsius >= self.fever_c


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class SitePolicies:
    """The default policy plus per-site overrides (site id → full policy)."""

    default: ScreeningPolicy = field(default_factory=ScreeningPolicy)
    sites: Mapping[str, ScreeningPolicy] = field(default_factory=dict)

    def for_site(self, site_id: str) -> ScreeningPolicy:
        return self.sites.get(site_id, self.default)

    @classmethod
    def from_mapping(cls, obj: object, *, timezone: str | None = None) -> SitePolicies:
        """Build from parsed YAML/JSON: ``{default: {...}, sites: {site: {...}}}``.

        Site entries override the (already overridden) default field by field.
        ``timezone``, when given (the CLI flag), replaces the default's zone.
        Durations are seconds or strings such as ``"20m"``, ``"1h"``, ``"14d"``.
        """
        if obj is None:
            obj = {}
        if not isinstance(obj, Mapping):
            raise PolicyError("a policy file must be a mapping with 'default' and/or 'sites'")
        unknown = set(obj) - {"default", "sites"}
        if unknown:
            raise PolicyError(f"unknown policy section(s): {', '.join(sorted(map(str, unknown)))}")
        default = _apply(ScreeningPolicy(), obj.get("default") or {}, "default")
        if timezone is not None:
            default = replace(default, timezone=timezone)
        sites_obj = obj.get("sites") or {}
        if not isinstance(sites_obj, Mapping):
            raise PolicyError("'sites' must map site ids to policy overrides")
        sites = {
            str(site): _apply(default, values or {}, f"sites.{site}")
            for site, values in sites_obj.items()
        }
        return cls(default=default, sites=sites)


PolicyLike: TypeAlias = ScreeningPolicy | SitePolicies


def resolve(policy: PolicyLike, site_id: str) -> ScreeningPolicy:
    """The policy that applies at ``site_id`` (a plain policy applies everywhere)."""
    if isinstance(policy, SitePolicies):
        return policy.for_site(site_id)
    return policy


_FIELD_TYPES: dict[str, type] = {
    f.name: type(getattr(ScreeningPolicy(), f.name)) for f in fields(ScreeningPolicy) if f.init
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _apply(base: ScreeningPolicy, values: object, where: str) -> ScreeningPolicy:
    if not isinstance(values, Mapping):
        raise PolicyError(f"{where}: expected a mapping of policy fields")
    changes: dict[str, Any] = {}
    for name, raw in values.items():
        kind = _FIELD_TYPES.get(str(name))
        if kind is None:
            raise PolicyError(f"{where}: unknown policy field {name!r}")
        changes[str(name)] = _cast(kind, raw, f"{where}.{name}")
    try:
        return dataclasses.replace(base, **changes)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    except (ValueError, OverflowError) as exc:  # anything the checks above missed
        raise PolicyError(f"{where}: {exc}") from None


def _cast(kind: type, raw: object, where: str) -> object:
    if kind is timedelta:
        if isinstance(raw, bool):
            raise PolicyError(f"{where}: expected a duration, got {raw!r}")
        if isinstance(raw, int | float):
            if not (math.isfinite(raw) and 0 < raw <= MAX_DURATION.total_seconds()):
                raise PolicyError(f"{where}: expected a positive duration of at most 366 days")
            return timedelta(seconds=raw)
        match = _DURATION.match(raw) if isinstance(raw, str) else None
        if match is None:
            raise PolicyError(f"{where}: expected seconds or e.g. '20m', got {raw!r}")
        seconds = float(match[1]) * _UNITS[match[2]]
        if not 0 < seconds <= MAX_DURATION.total_seconds():
            raise PolicyError(f"{where}: expected a positive duration of at most 366 days")
        return timedelta(seconds=seconds)
    if kind is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            number = float(raw)
        except OverflowError:  # an integer past any float
            raise PolicyError(f"{where}: {str(raw)[:20]}... is out of range") from None
        if not math.isfinite(number):
            raise PolicyError(f"{where}: expected a finite number, got {raw!r}")
        return number
    if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind is str and isinstance(raw, str):
        return raw
    if kind is tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
            return tuple(i.strip() for i in items if i.strip())
        raise PolicyError(f"{where}: expected a list of names, got {raw!r}")
    raise PolicyError(f"{where}: expected {kind.__name__}, got {raw!r}")
