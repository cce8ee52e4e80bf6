"""Streamlit-side helpers of the app: shared state (`cakd_viz.app.state`), bundle opening (`cakd_viz.app.bundles`),
cached computations (`cakd_viz.app.compute`), app configuration (`cakd_viz.app.config`) and the server/browser
harness (`cakd_viz.app.serve`). The maths and the figures live in `cakd_viz`; page scripts in `cakd_viz/app/pages/`.
"""

import os

# Idle OpenMP threads must sleep, not spin: on a busy machine (other sessions, other processes) spinning
# threads made torch's CPU kernels 10-25x slower in measurements here. Read when torch first loads,
# so it is set before anything below imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
