"""Typed settings for every role, with ``SCANTRAIL_*`` environment overrides.

Defaults point at the loopback services that ``make up`` starts. Secrets (the
InfluxDB token) come from the environment or from the env file that ``make up``
writes under the state directory, never from the repository.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def state_dir() -> Path:
    """Where local services and workers keep data and logs (``SCANTRAIL_STATE``)."""
    if env := os.environ.get("SCANTRAIL_STATE"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "scantrail"


def cache_dir() -> Path:
    """Where downloads and builds are cached (``SCANTRAIL_CACHE``)."""
    if env := os.environ.get("SCANTRAIL_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scantrail"


class KafkaSettings(BaseSettings):
    """Where the broker is and how the project's topics are shaped."""

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_KAFKA_", extra="ignore")

    #: SCANTRAIL_KAFKA_BOOTSTRAP: comma-separated host:port list.
    bootstrap: str = "127.0.0.1:9092"
    #: SCANTRAIL_KAFKA_PARTITIONS: partitions of each event topic when it is created.
    partitions: int = Field(default=4, ge=1)
    #: SCANTRAIL_KAFKA_REPLICATION: replication factor for created topics.
    replication: int = Field(default=1, ge=1)
    #: SCANTRAIL_KAFKA_RETENTION_DAYS: retention of event topics (scan trails are kept 28 days);
    #: 0 keeps them forever. Records carry their event time, so retention counts from
    #: when a scan happened, not when it was published.
    retention_days: int = Field(default=28, ge=0)

    #: SCANTRAIL_KAFKA_NAMESPACE: prefix for every topic name (isolates tests and trials).
    namespace: str = ""

    #: SCANTRAIL_KAFKA_SECURITY_PROTOCOL: how clients reach the brokers. A district
    #: cluster that kiosks reach over a network wants SASL_SSL.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    #: SCANTRAIL_KAFKA_SASL_MECHANISM
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    #: SCANTRAIL_KAFKA_SASL_USERNAME
    sasl_username: str = ""
    #: SCANTRAIL_KAFKA_SASL_PASSWORD, or SCANTRAIL_KAFKA_SASL_PASSWORD_FILE: a file
    #: holding it (a mounted secret), read once at start.
    sasl_password: SecretStr = SecretStr("")
    sasl_password_file: Path | None = None
    #: SCANTRAIL_KAFKA_SSL_CAFILE: CA bundle that signed the brokers' certificates
    #: (default: the system's trust store).
    ssl_cafile: Path | None = None

    @model_validator(mode="after")
    def _credentials_present(self) -> KafkaSettings:
        # The file is read only when SASL is on: manifests mount an optional
        # Secret for every pod, and a PLAINTEXT cluster has none to mount.
        needs_file = self.uses_sasl and not self.sasl_password.get_secret_value()
        if needs_file and self.sasl_password_file is not None:
            try:
                text = self.sasl_password_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read SCANTRAIL_KAFKA_SASL_PASSWORD_FILE: {exc}") from None
            object.__setattr__(self, "sasl_password", SecretStr(text))
        if self.uses_sasl and not (self.sasl_username and self.sasl_password.get_secret_value()):
            raise ValueError(
                f"security protocol {self.security_protocol} needs SCANTRAIL_KAFKA_SASL_USERNAME"
                " and SCANTRAIL_KAFKA_SASL_PASSWORD (or _PASSWORD_FILE)"
            )
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def topic(self, name: str) -> str:
        """The concrete topic for a contract topic name, within this namespace."""
        return f"{self.namespace}{name}"

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]


class InfluxSettings(BaseSettings):
    """The InfluxDB 2.x API the sinks write to; ``make up`` writes influx.env."""

    model_config = SettingsConfigDict(
        env_prefix="SCANTRAIL_INFLUX_",
        env_file=str(state_dir() / "influx.env"),
        extra="ignore",
    )

    #: SCANTRAIL_INFLUX_URL
    url: str = "http://127.0.0.1:8086"
    #: SCANTRAIL_INFLUX_ORG
    org: str = "scantrail"
    #: SCANTRAIL_INFLUX_BUCKET: the main time-series bucket.
    bucket: str = "scantrail"
    #: SCANTRAIL_INFLUX_WATCHED_BUCKET: per-person curves of watched persons (28-day retention).
    watched_bucket: str = "scantrail_watched"
    #: SCANTRAIL_INFLUX_TOKEN: an API token with write and read rights.
    token: SecretStr = SecretStr("")
    #: SCANTRAIL_INFLUX_GZIP: compress write bodies. Unset means "only when the server is
    #: not on this machine": over loopback gzip costs the writer CPU and saves nothing
    #: (measured in bench/README.md, the sink section).
    gzip: bool | None = None

    @property
    def use_gzip(self) -> bool:
        """Whether writes are compressed: the explicit setting, else off for loopback."""
        if self.gzip is not None:
            return self.gzip
        return not _is_loopback(urlsplit(self.url).hostname or "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WorkerSettings(BaseSettings):
    """The faust stream processors."""

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_WORKER_", extra="ignore")

    #: SCANTRAIL_WORKER_APP_ID: faust app id (consumer group and changelog prefix).
    app_id: str = "scantrail-worker"
    #: SCANTRAIL_WORKER_WEB_PORT: HTTP port for /trace and health.
    web_port: int = 6066
    #: SCANTRAIL_WORKER_DATA_DIR: RocksDB tables; default under the state dir.
    data_dir: Path | None = None
    #: SCANTRAIL_WORKER_TIMEZONE: local dates for rules (quarantine, baselines).
    timezone: str = "Asia/Shanghai"
    #: SCANTRAIL_WORKER_BATCH_MAX_EVENTS: events an agent takes at once
    #: (each changed state is written once per batch).
    batch_max_events: int = Field(default=2000, ge=1)
    #: SCANTRAIL_WORKER_BATCH_WAIT_MS: how long an agent waits to fill a batch
    #: (latency added when traffic is light). 50 rather than 20: at 1,000 readings
    #: and 1,000 scans a second the worker is CPU-bound, fewer and larger batches
    #: cost less per event, and the alert p99 was lower in all five back-to-back
    #: pairs of the latency bench, while five drain pairs did not move
    #: (bench/README.md, 2026-12-05).
    batch_wait_ms: float = Field(default=50.0, gt=0)
    #: SCANTRAIL_WORKER_JUDGE_SLICE_MS: the longest a stage runs its rules without
    #: letting the other stages, the web views and the acks run. A batch taken in
    #: a backlog can hold thousands of forwarded messages, each of many readings
    #: (a person stage held the loop for 4.7 s in the 1M bench drain, 2026-12-07);
    #: past this the rest of the batch is judged as the next batch, after a yield.
    judge_slice_ms: float = Field(default=100.0, gt=0)
    #: SCANTRAIL_WORKER_PRODUCER_LINGER_MS: how long the producer gathers records
    #: into one request (every table write is a changelog record: fewer requests, less CPU).
    producer_linger_ms: int = Field(default=10, ge=0)
    #: SCANTRAIL_WORKER_FETCH_BYTES: the most one fetch takes from a partition.
    #: faust hands a fetch's records to the agents in one round before it fetches
    #: again, so a large fetch of a source backlog keeps the later stages waiting
    #: for their first records (Kafka still returns one record larger than this).
    fetch_bytes: int = Field(default=1024**2, ge=1024)
    #: SCANTRAIL_WORKER_FETCH_MIN_BYTES and SCANTRAIL_WORKER_FETCH_MAX_WAIT_MS: while
    #: records flow, how much a fetch asks the broker to gather, and for how long
    #: at most, before it answers; SCANTRAIL_WORKER_FETCH_IDLE_WAIT_MS: after a fetch
    #: that brought nothing, the next asks for one byte and waits this long
    #: (processors.faust_fetch.FetchFlow). faust asks for one byte every time, so
    #: under a steady trickle its consumer thread fetches as fast as the broker
    #: answers, holding the interpreter lock the stages need. Latency bench,
    #: four alternated pairs (2026-12-07 19:52-20:05, 16384 bytes within 10 ms
    #: always, against one byte): the worker 37.6-41.7 CPU-s against 45.9-47.6,
    #: the broker 20.5-22.4 against 22.7-24.0, medians within 1-10 ms, p99s in
    #: the same range. Always 10 ms made an idle worker and its broker spend
    #: 17% and 13% of a core (one fetch every 10 ms) against 4% and 2%: hence
    #: the idle wait. fetch_min_bytes=1 is faust's behaviour.
    fetch_min_bytes: int = Field(default=16384, ge=1)
    fetch_max_wait_ms: int = Field(default=10, ge=0)
    fetch_idle_wait_ms: int = Field(default=1500, ge=0)
    #: SCANTRAIL_WORKER_MAX_POLL_RECORDS: the most records one poll hands to the
    #: agents, shared between partitions (processors.faust_fetch); 0, the default,
    #: is no bound. A bound lets the later stages move while a source backlog is
    #: read, at 20-30% of the drained rate (docs/screening.md).
    max_poll_records: int = Field(default=0, ge=0)
    #: SCANTRAIL_WORKER_BULK_RESTORE: before faust starts, bring the local tables
    #: up to their changelogs' ends with librdkafka (processors.changelog_restore);
    #: faust's own recovery, record by record, then reads only what is newer.
    bulk_restore: bool = True
    #: SCANTRAIL_WORKER_IN_PLACE_DELIVERY: hand each fetched message to the agents
    #: without faust's four tasks when the handing need not wait
    #: (processors.faust_delivery). The 1M bench phase drained 5,149 inputs/s with
    #: it and 2,345 without, and the latency phase's p99 was 265 ms with it and
    #: 4,599 ms without, in runs hours apart (bench/README.md). Its failures of
    #: the two-worker SIGKILL test came from HeadWatch taking records queued for a
    #: stream for lost ones (processors.faust_offsets); false turns it off.
    in_place_delivery: bool = True
    #: SCANTRAIL_WORKER_DIRECT_STANDBY_WRITES: write the changelog records of
    #: partitions this worker stands by for, and of the global trail tables'
    #: partitions another worker owns (between recoveries), to RocksDB straight
    #: from each fetch, in one write batch per partition, instead of through
    #: faust's conductor and recovery service one record at a time
    #: (processors.faust_standby); false keeps faust's path for all.
    direct_standby_writes: bool = True
    #: SCANTRAIL_WORKER_ROCKSDB_WAL: keep RocksDB's write-ahead log for the
    #: tables. Off by default: each table's changelog topic is its durable copy,
    #: and a store left behind by a crash is brought up to date from it
    #: (processors.faust_stores says why no row can be lost or doubled).
    rocksdb_wal: bool = False
    #: SCANTRAIL_WORKER_GC_YOUNG_THRESHOLD: new objects between two young
    #: collections. Python's default, 700, ran the collector every few events and
    #: promoted a batch's live objects toward the costly full collections, and
    #: 10,000 still walked the objects of the batches in flight again and again
    #: (processors/collector.py has the measurements).
    gc_young_threshold: int = Field(default=100_000, ge=100)
    #: SCANTRAIL_WORKER_GC_FULL_EVERY: middle collections between two full ones
    #: (Python's default is 10). Each full collection walks every cached state,
    #: and almost nothing it frees is garbage the younger ones missed
    #: (processors/collector.py).
    gc_full_every: int = Field(default=100, ge=1)
    #: SCANTRAIL_WORKER_IDLE_AFTER_S: a source partition that has delivered all
    #: it holds and been quiet this long stops holding event time back: its
    #: watermark follows the wall clock less this margin, so a quiet gate's
    #: re-measure windows still close (processors.watermarks). A reading that
    #: arrives later than its partition's watermark is judged on arrival, out
    #: of event-time order; raise it where kiosks pause longer than this and then
    #: catch up, at the cost of alerts at quiet gates waiting as long.
    idle_after_s: float = Field(default=30.0, gt=0)
    #: SCANTRAIL_WORKER_STANDBY_REPLICAS: how many other workers keep a warm copy
    #: of each partition's tables, so a worker's death costs its partitions no
    #: restore. Every standby replays the changelog records of the partitions it
    #: stands by for, which costs CPU; in three back-to-back pairs on the small
    #: bench set two workers were not consistently faster with 0 (bench/README.md).
    #: With 0 a survivor takes over a dead worker's partitions only after faust's
    #: own recovery has replayed what that worker wrote since the survivor
    #: started, one record at a time (1,300-1,800 records/s here; the bulk
    #: restore runs only at start-up), so its gates' alerts wait that long. The
    #: trail tables are global: every worker holds them whatever this says.
    standby_replicas: int = Field(default=1, ge=0)

    def resolved_data_dir(self) -> Path:
        return self.data_dir or state_dir() / "worker" / self.app_id


class ConsoleSettings(BaseSettings):
    """The web console (``scantrail console``): officers' queue, case and trace views."""

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_CONSOLE_", extra="ignore")

    #: SCANTRAIL_CONSOLE_HOST: loopback by default; publish it through a TLS proxy.
    host: str = "127.0.0.1"
    #: SCANTRAIL_CONSOLE_PORT
    port: int = 8480
    #: SCANTRAIL_CONSOLE_ACCOUNTS: the accounts file (default <state>/console/accounts.json).
    accounts: Path | None = None
    #: SCANTRAIL_CONSOLE_SECURE_COOKIES: mark session cookies Secure (on behind TLS; the
    #: console also sets it when a request arrives with X-Forwarded-Proto: https).
    secure_cookies: bool = False
    #: SCANTRAIL_CONSOLE_SESSION_HOURS: a session ends this long after its last use.
    session_hours: float = Field(default=12.0, gt=0)
    #: SCANTRAIL_CONSOLE_SESSION_MAX_HOURS: and this long after log-in, however busy.
    session_max_hours: float = Field(default=24.0, gt=0)
    #: SCANTRAIL_CONSOLE_SESSIONS: the session store (default <state>/console/sessions.db).
    sessions: Path | None = None
    #: SCANTRAIL_CONSOLE_TIMEZONE: the sites' time zone unless SITE_TIMEZONES names one.
    timezone: str = "Asia/Shanghai"
    #: SCANTRAIL_CONSOLE_SITE_TIMEZONES: JSON, e.g. {"site-ur": "Asia/Urumqi"}.
    site_timezones: dict[str, str] = Field(default_factory=dict)
    #: SCANTRAIL_CONSOLE_HEARTBEAT_S: a kiosk's heartbeat interval; silent after two.
    heartbeat_s: float = Field(default=30.0, gt=0)

    def accounts_path(self) -> Path:
        return self.accounts or state_dir() / "console" / "accounts.json"

    def sessions_path(self) -> Path:
        return self.sessions or state_dir() / "console" / "sessions.db"

    def zone_name(self, site_id: str) -> str:
        return self.site_timezones.get(site_id, self.timezone)


class VisitorSettings(BaseSettings):
    """The per-deployment secret that turns what a visitor shows into a pseudonymous id.

    The secret never leaves the district: a visitor id is an HMAC of the phone
    number under it, so the same visitor gets the same id at every gate of the
    deployment, and nobody without the secret can test a phone number against
    the ids in the topics.
    """

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_VISITOR_", extra="ignore")

    #: SCANTRAIL_VISITOR_SECRET, or SCANTRAIL_VISITOR_SECRET_FILE (a mounted secret).
    secret: SecretStr = SecretStr("")
    secret_file: Path | None = None

    def key(self) -> bytes:
        """The secret's bytes; a missing or short secret is an error, never a default."""
        text = self.secret.get_secret_value()
        if not text and self.secret_file is not None:
            try:
                text = self.secret_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read SCANTRAIL_VISITOR_SECRET_FILE: {exc}") from None
        if len(text) < 16:
            raise ValueError(
                "visitors need SCANTRAIL_VISITOR_SECRET or SCANTRAIL_VISITOR_SECRET_FILE"
                " (at least 16 characters, the same at every gate of the deployment)"
            )
        return text.encode()


class ReportSettings(BaseSettings):
    """The daily report (``scantrail report``)."""

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_REPORT_", extra="ignore")

    #: SCANTRAIL_REPORT_AT: local time of day the daily report is made (HH:MM).
    at: str = Field(default="16:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    #: SCANTRAIL_REPORT_TIMEZONE: the zone of that time and of the report's day.
    timezone: str = "Asia/Shanghai"
    #: SCANTRAIL_REPORT_DIR: where reports are written; default <state dir>/reports.
    dir: Path | None = None

    def resolved_dir(self) -> Path:
        return self.dir or state_dir() / "reports"


class TraceAccessSettings(BaseSettings):
    """Who may ask the worker for a trace, and how large a question may be (issue 14).

    Defaults are the safe ones: loopback only, faust's own table and router
    views off, a bounded period, window and depth, and a time limit.
    """

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_WORKER_", extra="ignore")

    #: SCANTRAIL_WORKER_WEB_BIND: interface the worker's web server listens on.
    #: 0.0.0.0 only behind a network policy or a TLS proxy that forwards the credential.
    web_bind: str = "127.0.0.1"
    #: SCANTRAIL_WORKER_WEB_TABLE_VIEWS: serve faust's /table/... and /router/... views
    #: (they print table contents without a credential; for debugging on a laptop only).
    web_table_views: bool = False
    #: SCANTRAIL_WORKER_TRACE_MAX_DAYS: the longest period one trace may cover.
    trace_max_days: float = Field(default=28.0, gt=0)
    #: SCANTRAIL_WORKER_TRACE_MAX_WINDOW_MINUTES: the largest contact window.
    trace_max_window_minutes: float = Field(default=60.0, ge=0)
    #: SCANTRAIL_WORKER_TRACE_MAX_DEPTH: 1 (contacts) or 2 (contacts of contacts).
    trace_max_depth: int = Field(default=2, ge=1, le=2)
    #: SCANTRAIL_WORKER_TRACE_TIMEOUT_S: a trace still searching after this is given up (503).
    trace_timeout_s: float = Field(default=10.0, gt=0)
    #: SCANTRAIL_WORKER_TRACE_THREADS: traces searched at once, off the event loop.
    trace_threads: int = Field(default=1, ge=1, le=8)


class RetentionSettings(BaseSettings):
    """How long personal data is kept where the topic retention does not decide it (days)."""

    model_config = SettingsConfigDict(env_prefix="SCANTRAIL_RETENTION_", extra="ignore")

    #: SCANTRAIL_RETENTION_TRAIL_DAYS: person-days and site slots in the worker's trail tables.
    trail_days: float = Field(default=28.0, gt=0)
    #: SCANTRAIL_RETENTION_TRAIL_CLOCK: what "now" is for the trail tables. ``event``: the
    #: newest scan time the worker has seen on any partition (replays of old periods keep
    #: their trails); ``wall``: also the clock on the wall, so trails expire when a whole
    #: district stops scanning (what a production cluster wants).
    trail_clock: Literal["event", "wall"] = "event"
    #: SCANTRAIL_RETENTION_SWEEP_S: how often partitions without new scans are swept.
    sweep_s: float = Field(default=600.0, gt=0)
    #: SCANTRAIL_RETENTION_QUARANTINE_DAYS: a quarantine record is tombstoned this long
    #: after its last day.
    quarantine_days: float = Field(default=28.0, ge=0)
    #: SCANTRAIL_RETENTION_INFLUX_DAYS: the InfluxDB buckets holding person ids.
    influx_days: int = Field(default=28, ge=1)


def influx_for_role(role: str, **overrides: object) -> InfluxSettings:
    """A role's InfluxDB settings: ``influx.env``, with ``influx-<role>.env`` (its own
    least-privilege token, from ``scantrail influx-setup``) on top; the environment wins."""
    base = state_dir()
    return InfluxSettings(
        _env_file=(base / "influx.env", base / f"influx-{role}.env"),  # type: ignore[call-arg]
        **overrides,  # type: ignore[arg-type]
    )
