"""Faust tables of the client role."""

from __future__ import annotations

import faust

from jobstream.names import PROGRESS_TABLE
from jobstream.settings import Settings


def create_progress_table(app: faust.App, settings: Settings) -> faust.Table:
    """The table of live job progress, keyed by job id like the response topic.

    `use_partitioner` lets the persisting agent write keys of several partitions from one batch:
    the changelog partition is then chosen from the key exactly as the response topic's was (same
    key bytes, same partitioner), so it still matches the partition the key is consumed from.
    """
    return app.Table(
        PROGRESS_TABLE,
        default=None,
        partitions=settings.partitions,
        key_type=bytes,  # bytes keys and values use the raw codec: the exact bytes on the wire
        value_type=bytes,
        use_partitioner=True,
    )
