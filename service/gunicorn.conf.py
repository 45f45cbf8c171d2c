"""Gunicorn settings: `gunicorn -c deploy/gunicorn.conf.py wsgi:app` (which reads this
file), or `pollbox serve` wherever Pollbox is installed. Shipped in the package as a
file that gunicorn reads, never imported: the master process must not import the app
(each worker builds its own, after gevent has patched the standard library).

Worker class: gevent. A vote spends most of its time waiting on Redis and the
database, and the tallies stream holds a connection open for minutes; gevent lets one
worker process serve hundreds of such connections, where a sync worker would be held
hostage by each. psycopg 3 (>= 3.1.14) and redis-py cooperate with gevent's patched
sockets. Every worker builds its own app after the fork, so each process creates its
Redis client and database pool exactly once.

Live tallies (`GET /api/v1/polls/<id>/tallies/stream`, Server-Sent Events): an open
stream is an idle greenlet waiting on an event, holding no database connection, so
`worker_connections` (not `workers`) bounds how many a process serves; each worker
keeps ONE Redis pub/sub subscription and fans its messages out to its streams
(service/tallies/stream.py). Streams end after 30 minutes and EventSource reconnects, so they
rebalance across workers; `timeout` is the worker heartbeat, which gevent keeps beating
while streams are open. Behind nginx, keep `proxy_buffering off` for the stream (the
answer also says `X-Accel-Buffering: no`).
"""

import contextlib
import gc
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile

import gevent

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gevent"
# Without REDIS_URL, duplicate checks live in one process's memory: one worker only.
if os.environ.get("REDIS_URL"):
    workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
else:
    workers = 1
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", 1000))
timeout = 30
# Graceful shutdown (SIGTERM, e.g. a rolling deploy): stop accepting, let requests in
# flight finish for up to this long, then exit. Kubernetes' terminationGracePeriodSeconds
# must be longer (deploy/k8s/deployment.yaml: 30).
graceful_timeout = 20
keepalive = 5
# A `context` query value may hold 500 characters: percent-encoded UTF-8, up to 6,000
# bytes. gunicorn's default request line (4,094) would refuse it with an HTML 414.
limit_request_line = 8190
preload_app = False
# gunicorn's control socket defaults to one path per user: several instances on one
# machine (tests, benchmarks) would take it from each other. Manage workers by signals.
control_socket_disable = True

# No gunicorn access log: the app logs every request itself, as JSON with its request id
# and with secrets in paths (receipts) redacted (service/infra/logs.py). gunicorn's
# request line would carry receipts and query strings, and `%(h)s` the client address.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# Prometheus multiprocess mode: every worker writes its metrics to files in this folder
# and /metrics adds them up. Set before any worker imports prometheus_client. Without a
# configured folder, each gunicorn run gets a fresh temporary one (removed at exit).
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pollbox-metrics-")


def on_starting(server):
    """Start from empty metric files: a configured folder may hold a previous run's."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


def post_worker_init(worker):
    """Set the loaded app's objects aside from garbage collection, then start the
    worker's lease (its votes in flight are told from dead ones by it), periodic
    reconciliation (one process per period runs it) and retention purge.

    The app, its libraries and caches are about 130,000 objects that live as long as the
    worker. A full collection walked them all and stopped every connection of the worker
    for up to 80 ms (five times in a 10-second tallies benchmark); frozen, about 3 ms."""
    gc.freeze()
    if "pollbox.redis" not in getattr(worker.wsgi, "extensions", {}):
        return  # another app under this config: bench/hello.py, the benchmark's ceiling
    from service import retention
    from service.infra.redis import EXTENSION
    from service.tallies import reconcile

    _end_streams_on_term(worker)
    redis = worker.wsgi.extensions[EXTENSION]
    redis.lease.start_refreshing(redis)
    reconcile.start_periodic(worker.wsgi)
    retention.start_periodic(worker.wsgi)


def _end_streams_on_term(worker):
    """On SIGTERM (a deploy, `systemctl stop`), the worker stops taking connections and
    waits up to `graceful_timeout` for its open ones: a live tallies stream, open for up
    to 30 minutes, held it the whole 20 s. Its streams now end at once (EventSource
    reconnects to a worker still serving) and only requests in flight are waited for."""
    hub = worker.wsgi.extensions["pollbox.stream"]
    stop = worker.handle_exit

    def handle_term(sig, frame):
        stop(sig, frame)
        gevent.spawn(hub.close)  # out of the signal handler: close() takes a lock

    signal.signal(signal.SIGTERM, handle_term)


def post_request(worker, req, environ, resp):
    """Let the worker's other connections go first once an answer is written.

    gevent switches greenlets only when one would block. A keep-alive client that sends
    its next request before the worker reads the socket again never makes its greenlet
    block, so a busy worker served it again and again while other connections waited:
    a hello-world answered in half a millisecond at the median took over half a second
    at the 99th percentile. Yielding here serves ready connections in turn.

    A stopping worker shuts the connection once the answer is written (gunicorn closes
    only those whose request began after the stop): a stream ended by the stop no longer
    leaves its connection waiting the keep-alive time for a next request, holding the
    worker up."""
    if not worker.alive and resp is not None:
        with contextlib.suppress(OSError):
            resp.sock.shutdown(socket.SHUT_RDWR)
    gevent.sleep(0)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (open streams) from /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
