"""Periodic jobs, defined in one place; each tick runs on one replica, claimed by a lease."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import IntegrityError

from bot.transition import Deps
from storage import queries as q
from storage.db import transaction

log = logging.getLogger(__name__)
Job = Callable[[], Awaitable[object]]
KEEP_SLOTS = timedelta(minutes=15)  # claimed slots kept this long: enough to audit recent ticks


class Scheduler:
    """APScheduler in memory per replica; due work lives in the database.

    Time is cut into slots of each job's interval; the first replica to claim a slot (a row
    keyed by job and slot) runs that tick, so every tick runs once however many replicas
    fire, and any live replica fires within one interval of a dead one.
    """

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.owner = uuid.uuid4().hex
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.ran: dict[str, int] = {}
        self.ticks: set[asyncio.Task[None]] = set()  # running now: stopping waits for them

    def every(self, name: str, seconds: float, job: Job) -> None:
        """Run `job` about every `seconds`, on whichever replica claims the tick."""
        self.scheduler.add_job(self._leased(name, seconds, job), "interval", seconds=seconds,
                               id=name, coalesce=True, max_instances=1)

    def _leased(self, name: str, seconds: float, job: Job) -> Callable[[], Awaitable[None]]:
        """The job wrapped in its slot claim and a guard that keeps the scheduler alive."""

        async def tick() -> None:
            if (task := asyncio.current_task()) is not None:
                self.ticks.add(task)
                task.add_done_callback(self.ticks.discard)
            try:
                if await self.claim(name, seconds):
                    await job()
                    self.ran[name] = self.ran.get(name, 0) + 1
            except Exception:  # one failed tick must not stop the next
                log.exception("scheduled job %s failed", name)

        return tick

    async def claim(self, name: str, seconds: float) -> bool:
        """Claim the current slot of a job; False when another replica already has it."""
        now = self.deps.clock()
        slot = int(now.timestamp() // seconds)
        end = datetime.fromtimestamp((slot + 1) * seconds, UTC)
        try:
            async with transaction(self.deps.sessions) as session:
                return await q.claim_slot(session, f"{name}@{slot}", owner=self.owner,
                                          until=end, forget_before=now - KEEP_SLOTS)
        except IntegrityError:
            return False

    def start(self) -> None:
        """Start inside the running loop (APScheduler 3 needs it)."""
        self.scheduler.start()
        log.info("scheduler started as replica %s", self.owner)

    def pause(self) -> None:
        """Fire no more ticks; those running go on (see `ticks`)."""
        if self.scheduler.running:
            self.scheduler.pause()

    def stop(self) -> None:
        """Fire no more ticks; those running are in `ticks`, for the app to let finish."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
