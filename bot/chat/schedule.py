"""Putting chat work on the queue: patch the live cards soon (a command just started one)."""

from __future__ import annotations

from bot.queue import Jobs, QueueName
from bot.services import Services

WAITING_KEY = "fb:chat:refresh-waiting"  # set while a refresh job waits in the queue


def refresh_soon(services: Services) -> None:
    if services.redis.set(WAITING_KEY, "1", nx=True, ex=30):
        services.queues[QueueName.DEFAULT].enqueue(Jobs.REFRESH_CHAT_CARDS, job_timeout=120, result_ttl=60)


def refresh_started(services: Services) -> None:
    """Called by the refresh job as it starts: the next `refresh_soon` queues a new one."""
    services.redis.delete(WAITING_KEY)
