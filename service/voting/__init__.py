"""Voting: the vote use-case and the trust features around it.

- `cast`: the use-case, `Voting.cast(poll_id, ballot, facts) -> Accepted | Refused`.
- `app`: the use-case wired to the app (`voting()`), for the web adapters.
- `ballot`: the parsed vote and its rules, ids, receipts and voter hashes.
- `ports`: what the use-case needs from outside; `redis_store` and `records` provide it
  on Redis and the database.
- `idempotency`, `ratelimits`, `integrity`: the Idempotency-Key, the vote limits and
  the counts of outcomes; `receipts`: a voter's view or withdrawal of their vote.
- `schemas`: what the API accepts and answers about votes.
"""
