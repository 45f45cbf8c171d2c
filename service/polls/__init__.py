"""Polls: what owners create and visitors vote in.

- `manage`: create, read, change (closing announces to webhooks) and delete polls.
- `cache`: polls as the read paths and the vote see them, cached per process as
  immutable snapshots checked against a version token in Redis.
- `embed`: the snippets that embed a poll, and the widget's themes and languages.
- `schemas`: what the API accepts and answers about polls.
"""
