"""Read models: what the votes add up to.

- `counts`: the tallies in Redis, kept in step with committed ballots and rebuilt from
  the database (the record) exactly, whenever they are missing.
- `results`: the tallies answer, its Wilson intervals, and the results rules.
- `stream`: live tallies, one Redis subscription per process fanned out to its streams.
- `reconcile`: finds tallies that drifted from the database and rebuilds them.
"""
