"""Stopping background tasks without hanging shutdown.

On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that races with its inner
future finishing (CPython gh-86296, fixed in 3.12), and a loop built on it then keeps running;
``await task`` after ``task.cancel()`` would wait forever (a test teardown hangs until
pytest-timeout, a service never stops). Background loops use ``asyncio.timeout`` instead, and
every cleanup context stops its tasks through :func:`stop_tasks`, which cancels again while a
task keeps running and gives up (loudly) after a bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
RECANCEL_EVERY_S = 0.5


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel the tasks and wait until they are done, re-cancelling any that swallowed the
    cancellation; after ``timeout_s`` log the stragglers and return."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            logger.error("background_tasks_did_not_stop", extra={"tasks": sorted(t.get_name() for t in pending)})
            return
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY_S, remaining))
    # Retrieve exceptions so asyncio does not log "exception was never retrieved" at exit.
    for task in tasks if isinstance(tasks, (list, tuple, set)) else ():
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("background_task_failed", extra={"task": task.get_name()}, exc_info=task.exception())


async def stop_task(task: asyncio.Task[Any], timeout_s: float = STOP_TIMEOUT_S) -> None:
    await stop_tasks([task], timeout_s)


async def run_every(interval_s: float, step: Callable[[], Awaitable[Any]], failed_event: str,
                    first_delay_s: float = 0.0) -> None:
    """A background loop: ``step()`` every ``interval_s`` (after ``first_delay_s``) until cancelled. A step
    that fails is logged as ``failed_event`` with its traceback, and the loop goes on."""
    if first_delay_s > 0:
        await asyncio.sleep(first_delay_s)
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(failed_event)
        await asyncio.sleep(interval_s)
