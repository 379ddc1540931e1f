"""Client role: the reconciliation loop, so that no accepted operation stays pending forever.

Runs on the leader client worker only. Each tick it
- re-publishes operations pending longer than `reconcile_after` (lost to a crash between storing
  and publishing, or to faust-streaming #606), and fails those past `max_attempts` through the
  normal response path so the progress table counts them;
- finishes jobs whose operations all ended but whose counters were not (a progress update lost
  with a crashed worker's table), from counts taken from the operations themselves.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import faust

from jobstream.agents.delivery import send_many_durably
from jobstream.errors import StorageError
from jobstream.models import OperationRequest, OperationResult
from jobstream.settings import Settings
from jobstream.storage import MongoRepository, PendingOperation, Progress, utcnow
from jobstream.telemetry import Metrics
from jobstream.topics import Topics

log = logging.getLogger(__name__)

BATCH = 5000


class Reconciler:
    """One reconciliation pass at a time; see the module docstring."""

    def __init__(
        self, repository: MongoRepository, topics: Topics, settings: Settings, metrics: Metrics
    ) -> None:
        self._repository = repository
        self._topics = topics
        self._settings = settings
        self._metrics = metrics

    async def run_once(self) -> int:
        """Re-publish stale operations and finish stalled jobs; returns operations re-published."""
        cutoff = utcnow() - timedelta(seconds=self._settings.reconcile_after)
        stale = await self._repository.stale_operations(cutoff, BATCH)
        republished = 0
        if stale:
            live = await self._repository.live_jobs({op.job_id for op in stale})
            orphans = [op for op in stale if op.job_id not in live]
            await self._repository.drop_orphans(orphans)
            current = [op for op in stale if op.job_id in live]
            await self._republish(current)
            await self._repository.mark_republished(current)
            republished = len(current)
            self._metrics.republished.inc(republished)
            log.warning("reconciliation re-published %d pending operations", republished)
        await self._finish_stalled(cutoff)
        return republished

    async def _republish(self, ops: list[PendingOperation]) -> None:
        """Publish the requests again; fail, through the response path, those out of attempts."""
        retry = [op for op in ops if op.attempts < self._settings.max_attempts]
        give_up = [op for op in ops if op.attempts >= self._settings.max_attempts]
        await send_many_durably(
            self._topics.requests,
            (
                (
                    op.job_id.encode(),
                    OperationRequest(
                        op.job_id, op.index, op.total, op.expression, op.attempts + 1
                    ).to_bytes(),
                )
                for op in retry
            ),
            self._metrics,
        )
        await send_many_durably(
            self._topics.responses,
            (
                (
                    op.job_id.encode(),
                    OperationResult(
                        job_id=op.job_id,
                        index=op.index,
                        total=op.total,
                        status="failed",
                        error=f"no result after {op.attempts} delivery attempts",
                    ).to_bytes(),
                )
                for op in give_up
            ),
            self._metrics,
        )

    async def _finish_stalled(self, cutoff: datetime) -> None:
        for job_id in await self._repository.stalled_jobs(cutoff, 100):
            counts = await self._repository.count_outcomes(job_id)
            if counts["pending"]:
                await self._repository.touch_job(job_id)  # still working; its operations age out
                continue
            log.warning("reconciliation finished stalled job %s from its operations", job_id)
            await self._repository.save_progress(
                [Progress(job_id, counts["succeeded"], counts["failed"], complete=True)]
            )


def register_reconcile(
    app: faust.App,
    topics: Topics,
    settings: Settings,
    repository: MongoRepository,
    metrics: Metrics,
) -> Reconciler:
    """Register the leader-only reconciliation timer."""
    reconciler = Reconciler(repository, topics, settings, metrics)

    @app.timer(interval=settings.reconcile_interval, on_leader=True, name="reconcile")
    async def reconcile() -> None:
        try:
            await reconciler.run_once()
        except StorageError as exc:
            log.warning("reconciliation skipped: %s", exc)

    return reconciler
