"""Who sends deliveries: RQ jobs on a shared Redis, or threads in the web process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from rq import Queue, SimpleWorker

from service.infra.db import db
from service.infra.redis import RedisHandle
from service.webhooks import delivery

log = logging.getLogger(__name__)

QUEUE_NAME = "pollbox-webhooks"
TICK_SECONDS = 1.0
IN_PROCESS_SENDERS = 4
JOB_RESULT_TTL_SECONDS = 60
JOB_FAILURE_TTL_SECONDS = 86_400


class RQRunner:
    """Deliveries as RQ jobs on Redis, sent by `flask --app wsgi webhooks worker`."""

    def __init__(self, redis: RedisHandle):
        self.queue = Queue(QUEUE_NAME, connection=redis.client)

    def submit(self, delivery_id: int) -> None:
        self.queue.enqueue(delivery.deliver_job, delivery_id,
                           result_ttl=JOB_RESULT_TTL_SECONDS,
                           failure_ttl=JOB_FAILURE_TTL_SECONDS,
                           job_timeout=delivery.SEND_TIMEOUT_SECONDS * 3)


class Worker(SimpleWorker):
    """RQ's SimpleWorker (jobs run in this process, no fork) whose command listener wakes
    every second. RQ's own waits up to 60 s for its subscription, and redis-py 8.2's
    `stop()` joins that wait, so a burst run or a shutdown could hang for a minute."""

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class InProcessRunner:
    """Without a shared Redis (REDIS_URL unset): a dispatcher thread, running `tick` every
    second, and sender threads in this process. Fine for one process, as the in-process
    Redis stand-in is."""

    def __init__(self, app: Flask, tick: Callable[[Flask], None]):
        self.app = app
        self.tick = tick
        self.senders = ThreadPoolExecutor(IN_PROCESS_SENDERS, thread_name_prefix="webhooks")
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, delivery_id: int) -> None:
        self.senders.submit(self._send, delivery_id)

    def _send(self, delivery_id: int) -> None:
        with self.app.app_context():
            try:
                delivery.attempt(session=db.session, delivery_id=delivery_id)
            except Exception:
                log.exception("webhook delivery %s failed to run", delivery_id)

    def start(self) -> None:
        if self.thread is not None:  # the common case
            return
        with self.lock:
            if self.thread is None and not self.stopped.is_set():
                log.info("webhooks: no REDIS_URL, deliveries run in this process")
                self.thread = threading.Thread(target=self._loop, daemon=True,
                                               name="webhooks-dispatcher")
                self.thread.start()

    def _loop(self) -> None:
        interval = self.app.config.get("WEBHOOKS_TICK_SECONDS", TICK_SECONDS)
        while not self.stopped.wait(interval):
            self.tick(self.app)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.senders.shutdown(wait=True)
