"""cakd_viz.app.serve: the helpers that start the app as a real server (no server is started here)."""

from __future__ import annotations

import builtins

import pytest

from cakd_viz.app import serve


def test_the_log_file_is_closed_when_the_server_cannot_be_started(tmp_path, monkeypatch):
    opened = []

    def tracking_open(*args, **kwargs):
        handle = builtins.open(*args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(serve, "open", tracking_open, raising=False)
    with pytest.raises(OSError):
        with serve.running_server(log=tmp_path / "server.log", python=tmp_path / "no-such-python"):
            pass
    assert len(opened) == 1 and opened[0].closed
