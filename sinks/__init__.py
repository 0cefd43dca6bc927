"""Sinks: InfluxDB time series and the officers pager."""
