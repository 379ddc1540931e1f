"""`python -m jobstream worker ...` runs the Faust worker CLI on jobstream's app."""

from jobstream.app import app

if __name__ == "__main__":
    app.main()
