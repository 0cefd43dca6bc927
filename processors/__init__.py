"""Stream processors: pure rule modules first, the faust wiring around them.

The rule modules (``screening``, ``baselines`` and their ``screening_*``
helpers) import only the standard library and the contract, so the live
worker, replays and the offline ``scantrail screen`` command run the very same
code. See docs/screening.md.
"""
