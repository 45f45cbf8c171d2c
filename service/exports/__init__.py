"""Exports for analysts: what the database recorded (the record, not the Redis read
model), streamed.

- `export`: tallies, time series and pseudonymous votes as CSV, JSON or NDJSON rows.
- `charts`: votes over time as an SVG line chart.
- `schemas`: what an export or a chart may be asked for.
"""
