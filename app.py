"""cakd-viz's app, started from a clone: `streamlit run app.py` (what `bash scripts/start.sh` and
`cakd-viz app` do). The app itself lives in the package: cakd_viz/app/main.py."""

from cakd_viz.app.main import main

main()
