"""cakd-viz."""
