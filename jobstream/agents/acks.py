"""Acknowledge a batch of events only once its work is done.

faust-streaming 0.15.3 `Stream.take_events` (faust/streams.py, lines 537-541 of the installed
copy) acknowledges every event of a batch in a `finally` around its `yield`: when the agent's body
raises, or is cancelled at shutdown, the unprocessed batch is acknowledged and its offsets may be
committed. Plain iteration (`async for event in stream.events()`, which the compute agent uses)
acknowledges each event in the same kind of `finally` (faust/streams.py `_py_aiter`, lines
1334-1349, and its Cython twin). `stream_ack_exceptions` does not reach that code.

The work-around holds one extra reference on each event's message while the body runs
(`Message.incref`, faust/types/tuples.py). Faust's `finally` then only drops its own reference;
the message reaches its final acknowledgement (and the consumer may commit past it) only when
`held` releases the extra one, which it does only if the body finished. A body that raises or is
cancelled leaves its messages unacknowledged: the consumer commits up to the first of them (it
commits contiguous acknowledged offsets only, from where the last commit ended:
jobstream/consumer.py, whose `_new_offset` replaces Faust's looser one) and the next owner of the
partition receives them again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import faust


@contextmanager
def held(events: Sequence[faust.EventT]) -> Iterator[None]:
    """Keep the events unacknowledged unless the `with` body completes."""
    for event in events:
        event.message.incref()
    yield
    # Reached only when the body completed: an exception skips the release.
    for event in events:
        event.ack()
