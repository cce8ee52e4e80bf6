"""Streamlit-side helpers of the app: shared state (`appkit.state`), bundle opening (`appkit.bundles`),
cached computations (`appkit.compute`), app configuration (`appkit.config`) and the server/browser
harness (`appkit.serve`). The maths and the figures live in `cakd_viz`; page scripts in `app_pages/`.
"""

import os

# Idle OpenMP threads must sleep, not spin: on a busy machine (other sessions, other processes) spinning
# threads made torch's CPU kernels 10-25x slower in measurements here. Read when torch first loads,
# so it is set before anything below imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
