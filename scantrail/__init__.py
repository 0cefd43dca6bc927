"""ScanTrail spine: the event contract, settings, clock and CLI shared by every role."""

__version__ = "0.1.0"
