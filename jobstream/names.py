"""Names of what jobstream stores outside its code: collections and the progress table.

Topic names are settings (`Settings.*_topic`), since deployments may rename them; these are not.
"""

from __future__ import annotations

#: Collections of the MongoDB database.
JOBS = "jobs"
#: A big job's operations and results past the first hundred (see `jobstream.storage`).
CHUNKS = "chunks"
#: Which seconds have jobs, for listing them on FerretDB (see `jobstream.storage.SlotIndex`).
LISTING = "listing"
#: How often reconciliation has republished a stalled job, and when last (see `jobstream.storage`).
RECONCILIATIONS = "reconciliations"

#: Name of the Faust table holding each job's live progress (its changelog is derived from it).
PROGRESS_TABLE = "job-progress"


def changelog_topic(client_group: str) -> str:
    """The progress table's changelog topic, as Faust names it (`<app id>-<table>-changelog`)."""
    return f"{client_group}-{PROGRESS_TABLE}-changelog"
