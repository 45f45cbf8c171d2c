"""Gunicorn settings: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

Worker class: gevent. A vote spends most of its time waiting on Redis and the
database, and the tallies stream holds a connection open for minutes; gevent lets one
worker process serve hundreds of such connections, where a sync worker would be held
hostage by each. psycopg 3 (>= 3.1.14) and redis-py cooperate with gevent's patched
sockets. Every worker builds its own app after the fork, so each process creates its
Redis client and database pool exactly once.
"""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gevent"
# Without REDIS_URL, duplicate checks live in one process's memory: one worker only.
if os.environ.get("REDIS_URL"):
    workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
else:
    workers = 1
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", 1000))
timeout = 30
graceful_timeout = 20
keepalive = 5
preload_app = False
# gunicorn's control socket defaults to one path per user: several instances on one
# machine (tests, benchmarks) would take it from each other. Manage workers by signals.
control_socket_disable = True

accesslog = "-"
# No client address (%(h)s) and no forwarded-for header: raw IPs are never logged.
access_log_format = '"%(r)s" %(s)s %(b)s %(M)sms "%({x-request-id}i)s"'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
