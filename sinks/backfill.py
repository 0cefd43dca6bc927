"""Backfill of the watched bucket: a newly watched person's earlier readings.

A person becomes watched when a quarantine record or a ``fever_*`` alert
reaches the sink. Readings the sink handles from then on are also written to
the watched bucket as they pass; the readings it handled *before* (the hot
reading behind the alert, the days before it) are only in the main bucket.
This module turns "watch P from day A to day B" into Flux queries on the main
bucket and the rows they return into ``watched_temperature`` lines, byte for
byte the lines the live path writes (same builder, same nanosecond timestamp,
read back from the stored point), so a backfill run twice, or a backfill that
overlaps live writes, rewrites the same points and doubles nothing.

What to backfill (:func:`plan`). The sink keeps, per watched person, a
:class:`Watch`: ``until`` (readings of local days before it are written live)
and ``covered_from``: every reading of the days ``[covered_from, until)`` is in
the watched bucket, or in a pending backfill. A new watch window
``[start, stop)`` needs a backfill of the parts outside that interval; when the
windows do not touch, the claim moves to the newer window (never claiming days
nobody backfilled). Windows: a fever alert covers 14 days before its local day
up to the end of the 28-day watch; a quarantine covers
``[max(starts_on, min(ends_on, today) - 14 days), ends_on)``. ``today`` is the
day the record was published (its Kafka timestamp), so replaying or catching up
on an old quarantine backfills the same days the live sink did.

The Flux shape (:func:`find_points_flux`, :func:`fetch_fields_flux`). The
person id is a field in the main bucket (a tag would explode its cardinality),
so nothing indexes it. Two steps, measured on a main bucket holding 560,000
temperature points in the queried window (10,000 residents, 4 readings a day,
14 days, 40 kiosks; InfluxDB 2.7.12 on the shared 2-core box, load 0.2-2;
``bench/bench_backfill.py`` repeats the measurement):

1. Find the points: ``_field == "person_id"`` and ``_value =~ /(?:p1|p2|...)/``
   over the union of the windows, keeping the series tags and the exact
   nanosecond time (the client's datetimes stop at microseconds, the points
   carry sub-microsecond jitter). The regex is pushed down to storage. It is
   deliberately *unanchored* (exact matches are checked here): with ``^...$``
   Go's backtracking matcher costs grew with every name, 0.2 s for 1 person,
   4-5 s for 50, 8.8 s for 100; unanchored it took 0.2-0.5 s for 1 to 100
   persons. ``contains(set:)`` took 9.5 s for one person, a ``dict`` lookup 12 s,
   and pivoting all fields before filtering 14.6 s for 10 persons.
2. Fetch ``celsius`` and ``event_id`` of exactly those points: a union of reads
   of one series over ``[t, t + 1 ns)`` each, 200 per query. Every read is a
   pushed-down storage seek: 1.75-1.9 ms per point for unions of 50 to 400
   (a single union of 2,800 reads was superlinear: 15-22 s).

Measured end to end through :func:`run_backfill` (the code the sink runs):
one watched person with 56 readings in the window, 0.45 s (2 queries); 10
persons 1.8 s (4 queries); 50 persons 6.4 s (15); 100 persons 13.4 s (29),
about 2.3 ms per backfilled point. A sink batch pays it once, when those
persons become watched; the sink keeps polling (paused) while it takes long.
``valid`` is recomputed from ``celsius`` exactly as the live path does rather
than fetched.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from sinks.lines import watched_temperature_point

BACKFILL_DAYS = 14
PERSONS_PER_QUERY = 100  # step 1 stays 0.2-0.5 s up to here (see above)
POINTS_PER_QUERY = 200  # step 2: reads per union; large unions grow superlinearly
MAX_RANGE = timedelta(days=62)  # a chunk's union of windows stays about one window wide
FOREVER = date.max  # ``until`` of a watch without an end
_LAST_QUERYABLE_DAY = date(2200, 1, 1)  # Flux ranges end in 2262; nothing is stored beyond
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_REGEX_PUNCTUATION = frozenset(string.punctuation)


class Watch(NamedTuple):
    """One watched person: readings of days before ``until`` go to the watched bucket.

    ``[covered_from, until)`` is the span whose readings the watched bucket
    already holds (or a pending backfill will store); ``covered_from == until``
    claims nothing.
    """

    until: date
    covered_from: date


class BackfillTask(NamedTuple):
    """Copy a person's readings of local days ``[start, stop)`` to the watched bucket."""

    person_id: str
    start: date
    stop: date
    id: int = 0  # its row in the sink state, deleted once the lines are stored


class Point(NamedTuple):
    """A stored temperature point of a watched person (series and exact timestamp)."""

    ts_ns: int
    site_id: str
    kiosk_id: str
    method: str
    person_id: str


@dataclass
class BackfillResult:
    lines: list[str] = field(default_factory=list)
    queries: int = 0
    points_found: int = 0
    incomplete: int = 0  # found by person id, but celsius or event_id was missing


# --- what to backfill ------------------------------------------------------------


def fever_window(event_time: datetime, tz: tzinfo, watch_for: timedelta) -> tuple[date, date]:
    """The days a fever alert watches: 14 days before its local day, to the watch's end."""
    day = event_time.astimezone(tz).date()
    return day - timedelta(days=BACKFILL_DAYS), (event_time + watch_for).astimezone(tz).date()


def quarantine_window(starts_on: date, ends_on: date, today: date) -> tuple[date, date]:
    """The quarantine's days, but no further back than 14 days before today (or its end)."""
    return max(starts_on, min(ends_on, today) - timedelta(days=BACKFILL_DAYS)), ends_on


def plan(current: Watch | None, start: date, stop: date) -> tuple[Watch, list[tuple[date, date]]]:
    """The person's watch after a new window ``[start, stop)``, and the spans to backfill.

    The spans are the parts of the window the current watch does not cover,
    so a re-delivered watch plans nothing. The coverage claim only ever names
    days that are backfilled or written live: when the new window does not
    touch the covered span, the claim moves to the newer window and the older
    one is forgotten (a later watch of it backfills it again, harmlessly).
    """
    if current is None:
        current = Watch(until=stop, covered_from=stop)
    if start >= stop:
        # An empty window watches no day. Moving ``until`` here would stretch
        # the coverage claim over days nobody backfilled, and a later window
        # over them would then plan nothing (found by the property test).
        return current, []
    until = max(current.until, stop)
    low, high = current.covered_from, current.until
    if low >= high:  # nothing covered yet (new, or watched before backfills existed)
        return Watch(until, start), [(start, until)]
    if start > high:  # a gap between the covered span and the new window
        return Watch(until, start), [(start, stop)]
    if stop < low:  # an older window, apart from the covered span: claim nothing new
        return Watch(until, low), [(start, stop)]
    spans = [(start, min(stop, low))] if start < low else []
    if stop > high:
        spans.append((max(start, high), stop))
    return Watch(until, min(low, start)), spans


def is_watched(watch: Watch | None, day: date) -> bool:
    return watch is not None and day < watch.until


# --- the Flux queries --------------------------------------------------------------


def chunks(tasks: Sequence[BackfillTask]) -> list[list[BackfillTask]]:
    """Tasks grouped for step 1: at most PERSONS_PER_QUERY persons, windows close together."""
    out: list[list[BackfillTask]] = []
    persons: set[str] = set()
    first: date | None = None
    for task in sorted(tasks, key=lambda t: (t.start, t.person_id)):
        full = len(persons) >= PERSONS_PER_QUERY and task.person_id not in persons
        if not out or full or first is None or _clamp(task.stop) - first > MAX_RANGE:
            out.append([])
            persons, first = set(), task.start
        out[-1].append(task)
        persons.add(task.person_id)
    return out


def find_points_flux(bucket: str, tasks: Sequence[BackfillTask], tz: tzinfo) -> str:
    """Step 1: the series and nanosecond times of these persons' temperature points."""
    start = _rfc3339(_midnight(min(t.start for t in tasks), tz))
    stop = _rfc3339(_midnight(max(_clamp(t.stop) for t in tasks), tz))
    names = "|".join(_regex_literal(p) for p in sorted({t.person_id for t in tasks}))
    return (
        f'from(bucket: "{_flux_str(bucket)}")\n'
        f"  |> range(start: {start}, stop: {stop})\n"
        '  |> filter(fn: (r) => r._measurement == "temperature" and r._field == "person_id"'
        f" and r._value =~ /(?:{names})/)\n"
        '  |> keep(columns: ["_time", "_value", "site_id", "kiosk_id", "method"])\n'
        "  |> map(fn: (r) => ({r with ns: int(v: r._time)}))"
    )


def matching_points(
    rows: Iterable[Mapping[str, Any]], tasks: Sequence[BackfillTask], tz: tzinfo
) -> list[Point]:
    """Step 1's rows that really belong to a task: exact person, inside its window."""
    windows: dict[str, list[tuple[int, int]]] = {}
    for task in tasks:
        span = (_ns(_midnight(task.start, tz)), _ns(_midnight(_clamp(task.stop), tz)))
        windows.setdefault(task.person_id, []).append(span)
    found: dict[Point, None] = {}
    for row in rows:
        person, ns = row.get("_value"), row.get("ns")
        site, kiosk, method = row.get("site_id"), row.get("kiosk_id"), row.get("method")
        if not (isinstance(person, str) and isinstance(ns, int)):
            continue
        if not (isinstance(site, str) and isinstance(kiosk, str) and isinstance(method, str)):
            continue
        if any(low <= ns < high for low, high in windows.get(person, ())):
            found[Point(ns, site, kiosk, method, person)] = None
    return sorted(found)


def fetch_fields_flux(bucket: str, points: Sequence[Point]) -> str:
    """Step 2: celsius and event_id of exactly these points, one pushed-down seek each."""
    reads = ",\n".join(
        f'  from(bucket: "{_flux_str(bucket)}")'
        f" |> range(start: {_rfc3339_ns(p.ts_ns)}, stop: {_rfc3339_ns(p.ts_ns + 1)})"
        f' |> filter(fn: (r) => r._measurement == "temperature"'
        f' and r.site_id == "{_flux_str(p.site_id)}" and r.kiosk_id == "{_flux_str(p.kiosk_id)}"'
        f' and r.method == "{_flux_str(p.method)}"'
        ' and (r._field == "celsius" or r._field == "event_id"))'
        for p in points
    )
    # Flux's union refuses a single stream: a chunk of one point (a person with one
    # reading, or the 201st point) is read on its own.
    source = f"union(tables: [\n{reads},\n])" if len(points) > 1 else reads.strip()
    return (
        f"{source}\n"
        '  |> keep(columns: ["_time", "_field", "_value", "site_id", "kiosk_id", "method"])\n'
        "  |> map(fn: (r) => ({r with ns: int(v: r._time)}))"
    )


def watched_lines(points: Sequence[Point], rows: Iterable[Mapping[str, Any]]) -> list[str | None]:
    """The watched line of each point (None when a field is missing), from step 2's rows."""
    values: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row.get("ns"), row.get("site_id"), row.get("kiosk_id"), row.get("method"))
        values.setdefault(key, {})[str(row.get("_field"))] = row.get("_value")
    out: list[str | None] = []
    for p in points:
        got = values.get((p.ts_ns, p.site_id, p.kiosk_id, p.method), {})
        celsius, event_id = got.get("celsius"), got.get("event_id")
        if isinstance(celsius, float) and isinstance(event_id, str):
            out.append(
                watched_temperature_point(
                    p.person_id, p.site_id, p.kiosk_id, celsius, event_id, p.ts_ns
                )
            )
        else:
            out.append(None)
    return out


def run_backfill(
    tasks: Sequence[BackfillTask],
    bucket: str,
    tz: tzinfo,
    query: Callable[[str], Sequence[Mapping[str, Any]]],
) -> BackfillResult:
    """All the lines the tasks need, with one step-1 query per chunk of persons."""
    result = BackfillResult()
    seen: set[str] = set()
    for group in chunks(tasks):
        points = matching_points(query(find_points_flux(bucket, group, tz)), group, tz)
        result.queries += 1
        result.points_found += len(points)
        for i in range(0, len(points), POINTS_PER_QUERY):
            part = points[i : i + POINTS_PER_QUERY]
            result.queries += 1
            for made in watched_lines(part, query(fetch_fields_flux(bucket, part))):
                if made is None:
                    result.incomplete += 1
                elif made not in seen:
                    seen.add(made)
                    result.lines.append(made)
    return result


# --- formatting ---------------------------------------------------------------------


def _clamp(day: date) -> date:
    return min(day, _LAST_QUERYABLE_DAY)


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _ns(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def _rfc3339(at: datetime) -> str:
    return _rfc3339_ns(_ns(at))


def _rfc3339_ns(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _flux_str(value: str) -> str:
    """A Flux string literal's content (identifiers never need it; bucket names might)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")


def _regex_literal(value: str) -> str:
    """``value`` matched literally inside a Flux ``/regex/`` (RE2 accepts ``\\`` + punctuation)."""
    return "".join("\\" + ch if ch in _REGEX_PUNCTUATION else ch for ch in value)
