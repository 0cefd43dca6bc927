"""Files a replay leaves for the epidemiologist: trails as Parquet and a summary plot."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scantrail.contract import ScanEvent


def write_trails(scans: Sequence[ScanEvent], path: Path) -> None:
    """Every scan of the period, one row each, sorted by person then time (a trail per person)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(scans, key=lambda s: (s.person_id, s.scanned_at, s.event_id))
    table = pa.table(
        {
            "person_id": [s.person_id for s in rows],
            "scanned_at": pa.array([s.scanned_at for s in rows], type=pa.timestamp("us", tz="UTC")),
            "site_id": [s.site_id for s in rows],
            "kiosk_id": [s.kiosk_id for s in rows],
            "direction": [s.direction for s in rows],
            "pass_status": [s.pass_status for s in rows],
            "event_id": [s.event_id for s in rows],
        }
    )
    pq.write_table(table, path)


def _bin_width(scans: Sequence[ScanEvent]) -> timedelta:
    """Bins that show a few dozen steps, whatever the period's length."""
    if not scans:
        return timedelta(hours=1)
    span = max(s.scanned_at for s in scans) - min(s.scanned_at for s in scans)
    for width in (timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1)):
        if span <= width * 48:
            return width
    return timedelta(hours=6)


def plot_summary(scans: Sequence[ScanEvent], path: Path, top_sites: int = 8) -> None:
    """Passages over time for the busiest sites: where and when people met."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = _bin_width(scans)
    step = int(width.total_seconds())
    fig, ax = plt.subplots(figsize=(11, 5))
    per_site = Counter(s.site_id for s in scans)
    for site, _ in per_site.most_common(top_sites):
        bins = Counter(
            datetime.fromtimestamp(int(s.scanned_at.timestamp()) // step * step, tz=UTC)
            for s in scans
            if s.site_id == site
        )
        xs = sorted(bins)
        ax.step(xs, [bins[x] for x in xs], where="post", label=site)  # type: ignore[arg-type]
    minutes = int(width.total_seconds() // 60)
    ax.set_title(
        f"Passages per {minutes} min, {len(scans)} scans, "
        f"busiest {min(top_sites, len(per_site))} sites"
    )
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(f"scans per {minutes} min")
    if per_site:
        ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
