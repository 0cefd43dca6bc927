"""One scan per pass presentation: the same key seen again within 3 s is the same scan.

A resident holds a pass in front of the camera for a second or two, so at 10-30
frames per second the decoder reads it dozens of times. :class:`ScanDeduplicator`
turns those reads into one scan. The window slides: each sighting extends it, so
a pass held still for ten seconds is still one scan, and the same pass shown
again after a 3-second gap is a new one. Pure: frame timestamps come in as
arguments (seconds, e.g. ``time.monotonic()`` or the capture timestamp).

Key by pass id rather than raw text: a phone token changes every minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_WINDOW_S", "ScanDeduplicator"]

DEFAULT_WINDOW_S = 3.0


@dataclass
class ScanDeduplicator:
    window_s: float = DEFAULT_WINDOW_S
    _last_seen: dict[str, float] = field(default_factory=dict, init=False)

    def admit(self, key: str, at: float) -> bool:
        """True if this sighting starts a new scan; records it either way."""
        previous = self._last_seen.get(key)
        self._last_seen[key] = at if previous is None else max(previous, at)
        self._prune(at)
        return previous is None or at - previous > self.window_s

    def _prune(self, now: float) -> None:
        if len(self._last_seen) > 64:
            cutoff = now - self.window_s
            self._last_seen = {k: t for k, t in self._last_seen.items() if t >= cutoff}
