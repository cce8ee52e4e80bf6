"""`python -m cakd_viz ...`: the command line (see `cakd_viz.cli`)."""

from cakd_viz.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
