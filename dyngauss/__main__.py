"""`python -m dyngauss <command> ...`: the same as the `dyngauss` console command (dyngauss/cli/main.py)."""
import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
