"""`python -m jobstream worker ...` runs the Faust worker CLI on jobstream's app (on uvloop)."""

import os

# Faust picks its event loop when it is first imported; F_LOOP=aio keeps asyncio's own loop.
os.environ.setdefault("F_LOOP", "uvloop")

from jobstream.app import app

if __name__ == "__main__":
    app.main()
