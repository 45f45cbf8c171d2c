"""Infrastructure: what every layer above stands on.

- `config`: every setting, read once from the environment.
- `clock`: the request's notion of now, and the one time format of the answers.
- `db`: the SQLAlchemy and Alembic extensions, engine options; `models`: the tables.
- `redis`: the one Redis client per process, every Lua script, and the outage policy.
- `keys`: every Redis key name.
- `identity`: client addresses and the per-poll keyed hashes that stand in for them.
- `errors`: the exception hierarchy, rendered as problem+json in one place.
- `fields`: the marshmallow field types the schemas share.
- `logs`, `metrics`: JSON log lines with request ids; Prometheus metrics and /metrics.
"""
