"""Stream processors: pure rule modules first, the faust wiring around them.

The rule modules (``screening``, ``baselines`` and their ``screening_*``
helpers) import only the standard library and the contract, so the live
worker, replays and the offline ``scantrail screen`` command run the very same
code. See docs/screening.md.

The trail modules (``trails``: per-person and per-site stores; ``contacts``:
the trace) follow the same rule, for the worker and ``scantrail trace``;
``trace_report`` turns a trace into CSV and matplotlib plots. See
docs/trails.md.
"""
