"""ScanTrail's errors, one base so the CLI can catch them once.

ScanTrailError
├── ContractError   an event failed validation (goes to the dead-letter topic)
├── PassError       a pass could not be issued or read
├── SpoolError      the kiosk's durable spool is unusable
├── PublishError    Kafka refused or could not be reached
├── SinkError       InfluxDB or a pager channel failed
└── ServiceError    a local service is missing or unhealthy
"""

from __future__ import annotations


class ScanTrailError(Exception):
    """Base of every error ScanTrail raises on purpose."""


class ContractError(ScanTrailError, ValueError):
    """An event failed validation; the message says which field and why."""


class PassError(ScanTrailError):
    """A pass could not be issued, signed or parsed."""


class SpoolError(ScanTrailError):
    """The kiosk's spool cannot be opened or written."""


class PublishError(ScanTrailError):
    """Kafka refused an event or could not be reached in time."""


class SinkError(ScanTrailError):
    """A sink's target (InfluxDB, webhook, SMTP) failed."""


class ServiceError(ScanTrailError):
    """A service ScanTrail needs is not configured or not answering."""
