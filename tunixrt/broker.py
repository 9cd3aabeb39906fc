"""kombu's Redis transport, made to survive a Redis outage while tasks run (CELERY_BROKER_TRANSPORT).

On losing Redis, Celery 5.7 / kombu 5.7 close the worker's channel (the running
tasks keep running: they are not cancelled on a connection loss). Two things then
go through that closed channel and raise an AttributeError, which the worker takes
for an unrecoverable error and exits on: putting the running tasks' messages back
on the queue as the channel closes, and acknowledging them when the tasks finish,
after the worker has reconnected. Both are skipped here: the messages stay in
Redis's unacked set, Redis redelivers them after the visibility timeout, and the
job's guarded claim turns the duplicate away (its row is no longer pending).
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis

logger = logging.getLogger(__name__)


class Channel(redis.Channel):
    def close(self) -> None:
        if self.connection is not None and self.connection.client is None:
            # Collected after a connection loss: Redis cannot be reached to restore anything.
            self.qos.restore_at_shutdown = False
        super().close()

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        if self._lost(delivery_tag, "acknowledge"):
            return
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._lost(delivery_tag, "reject"):
            return
        super().basic_reject(delivery_tag, requeue)

    def _lost(self, delivery_tag: Any, action: str) -> bool:
        if self.connection is not None:
            return False
        logger.warning(
            "Cannot %s task message %s: it came through a broker connection since lost; "
            "Redis redelivers it after the visibility timeout.",
            action,
            delivery_tag,
        )
        return True


class Transport(redis.Transport):
    Channel = Channel
