"""`python -m jobstream worker ...` (or `jobstream worker ...`) runs the Faust worker CLI on
jobstream's app, on uvloop."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run Faust's command line on jobstream's app with `argv` (default: this process's)."""
    # Faust picks its event loop when it is first imported; F_LOOP=aio keeps asyncio's own loop.
    os.environ.setdefault("F_LOOP", "uvloop")
    from jobstream.app import app

    if argv is not None:
        # Faust reads sys.argv, and names the app's origin package after argv[0]: make both what
        # `python -m jobstream` gives, whichever command got here
        sys.argv = [__file__, *argv]
    app.main()


if __name__ == "__main__":
    main()
