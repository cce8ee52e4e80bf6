"""The script `cakd-viz app` hands to `streamlit run` (alone in its folder: Streamlit puts a script's
folder on sys.path, and nothing else should become importable from there)."""

from cakd_viz.app.main import main

main()
