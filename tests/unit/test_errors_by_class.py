"""The command lines turn known failures into one line by their class, not by their class's name: a tracking or
data error exits 1 with its message; any other error, even one that happens to share the name, is not hidden."""
from __future__ import annotations

import pytest

import pipelines.full_run as full_run
import pipelines.tune_schedule as tune_schedule
from pggan.tracking.client import TrackingError
from pggan.storage_checks import IngestError


class _Impostor:
    """Errors that share a known error's name but are not it: they must keep their traceback."""

    class TrackingError(RuntimeError):
        pass

    class IngestError(RuntimeError):
        pass


def _raising(error: BaseException):
    def fake(*args, **kwargs):
        raise error
    return fake


def test_full_run_reports_a_tracking_error_in_one_line_with_exit_1(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(full_run, "full_run", _raising(TrackingError("tracking.uri: server unreachable; start it")))
    assert full_run.main(["--set", f"storage.root={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "full_run: error: tracking.uri: server unreachable; start it"


def test_full_run_lets_an_error_that_only_shares_the_name_through(monkeypatch, tmp_path):
    monkeypatch.setattr(full_run, "full_run", _raising(_Impostor.TrackingError("not the real one")))
    with pytest.raises(_Impostor.TrackingError, match="not the real one"):
        full_run.main(["--set", f"storage.root={tmp_path}"])


@pytest.mark.parametrize("error", [IngestError("no usable image in /x"), TrackingError("tracking.uri: bad")])
def test_tune_reports_a_data_or_tracking_error_in_one_line_with_exit_1(monkeypatch, tmp_path, capsys, error):
    monkeypatch.setattr(tune_schedule, "sweep", _raising(error))
    assert tune_schedule.main(["--set", f"storage.root={tmp_path}", "--num-samples", "1"]) == 1
    assert capsys.readouterr().err.strip() == f"tune_schedule: error: {error}"


@pytest.mark.parametrize("kind", [_Impostor.IngestError, _Impostor.TrackingError])
def test_tune_lets_an_error_that_only_shares_the_name_through(monkeypatch, tmp_path, kind):
    monkeypatch.setattr(tune_schedule, "sweep", _raising(kind("not the real one")))
    with pytest.raises(kind, match="not the real one"):
        tune_schedule.main(["--set", f"storage.root={tmp_path}", "--num-samples", "1"])
