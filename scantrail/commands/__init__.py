"""Thin click commands: parse options, build settings, call a role's code."""
