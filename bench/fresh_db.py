"""`python -m bench.fresh_db`: drop the benchmark's database and create its indexes again.

bench/run.sh points the workers at a database of their own (JOBSTREAM_MONGO_DATABASE, default
`jobstream_bench`) and empties it before every run: what a run measures must not depend on what
earlier runs left behind (FerretDB answers some queries by reading whole collections, so the
figures degrade as collections grow; see the report's PostgreSQL section).
"""

from __future__ import annotations

import asyncio
import sys

from pymongo import AsyncMongoClient

from jobstream.bootstrap import prepare_storage
from jobstream.settings import Settings


async def fresh(settings: Settings) -> None:
    """Drop the database, then create its collections' indexes (jobstream.bootstrap's own code)."""
    if settings.mongo_database == "jobstream":
        raise SystemExit("refusing to drop the default database `jobstream`")
    client: AsyncMongoClient = AsyncMongoClient(settings.mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        await client.drop_database(settings.mongo_database)
    finally:
        await client.close()
    await prepare_storage(settings)


def main() -> int:
    settings = Settings.from_env()
    asyncio.run(fresh(settings))
    print(f"database {settings.mongo_database} emptied, indexes created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
