"""The runs tracker: hyperparameter columns, sweep trial labels, notes, archive and delete (library), and the
Tune page's tracker, run view, held-out term curves and sweep heatmap (AppTest), on run folders written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_logits
from fake_runs import write_run, write_sweep
from streamlit.testing.v1 import AppTest

from cakd_viz.app import config as app_config
from cakd_viz.app import tracker
from cakd_viz.bundle import write_bundle
from cakd_viz.runs import list_runs, store
from cakd_viz.runs.results import (
    NOTE,
    NOTE_MAX_CHARS,
    archive_run,
    delete_run,
    list_archived,
    read_note,
    restore_run,
    tracker_table,
    varied_params,
    write_note,
)

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SWEEP = "20260101-000000-sweep-x-0000"


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(root))
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, f"{tmp_path / 'data'}:{root}")
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    (tmp_path / "data").mkdir()
    return root


def _sweep(root: Path, accs: dict, *, val_split=0.1, unvalidated: int = 0) -> list[str]:
    """A 2 x 2 x 3 (alpha x beta x seed) sweep; ``accs[(alpha, beta)]``: the three seeds' accuracies.
    Its trials hold out ``val_split``, except the first ``unvalidated`` ones (made without one)."""
    ids, i = [], 0
    for (alpha, beta), values in accs.items():
        for seed, acc in enumerate(values):
            rid = f"{SWEEP}-{i:03d}"
            write_run(
                root,
                rid,
                loss={"alpha": alpha, "beta": beta},
                accs=(acc - 0.1, acc),
                seed=seed,
                sweep=SWEEP,
                params={"alpha": alpha, "beta": beta, "seed": seed, "lr": 0.05},
                created=1_700_000_000 + i,
                val_split=None if i < unvalidated else val_split,
            )
            ids.append(rid)
            i += 1
    write_sweep(root, SWEEP, ids, {"alpha": [1.0, 2.0], "beta": [4.0, 8.0], "seed": [0, 1, 2], "lr": [0.05]})
    return ids


ACCS = {
    (1.0, 4.0): (0.978, 0.980, 0.982),
    (1.0, 8.0): (0.980, 0.981, 0.985),
    (2.0, 4.0): (0.979,) * 3,
    (2.0, 8.0): (0.983, 0.984, 0.985),
}


def test_tracker_table_has_the_hyperparameters_and_labels_trials_by_what_they_vary(runs):
    _sweep(runs, ACCS)
    write_run(runs, "20260102-000000-kd-aaaa", loss={"name": "kd", "temperature": 2.0}, name="my_kd")
    write_run(
        runs, "20260102-000001-dkd-bbbb", loss={"name": "dkd", "alpha": 1.0, "beta": 8.0, "warmup": 1.0}
    )
    table = tracker_table(list_runs(runs)).set_index("id")
    kd = table.loc["20260102-000000-kd-aaaa"]
    assert (kd["run"], kd["loss"], kd["temperature"], kd["lr"], kd["seed"]) == ("my_kd", "kd", 2.0, 0.05, 0)
    assert pd.isna(kd["w_b"]) and pd.isna(kd["alpha"]) and pd.isna(kd["grouping"])  # KD has none of these
    dkd = table.loc["20260102-000001-dkd-bbbb"]
    assert (dkd["alpha"], dkd["beta"], dkd["warmup"]) == (1.0, 8.0, 1.0)
    assert pd.isna(dkd["grouping"]) and pd.isna(dkd["w_b"])  # DKD takes no grouping: it splits at {label}
    trial = table.loc[f"{SWEEP}-004"]
    assert trial["run"] == "alpha=1 · beta=8 · seed=1"  # lr is swept but the same for all: left out
    assert trial["sweep"] == SWEEP and trial["best_acc"] == pytest.approx(0.981)
    assert trial["eval_split"] == "validation" and kd["eval_split"] == "test"  # kd's config has no val_split
    assert len(set(table.loc[table["sweep"] == SWEEP, "run"])) == 12  # every trial its own label
    assert varied_params(list_runs(runs)) == {SWEEP: ["alpha", "beta", "seed"]}
    assert bool(trial["held_out_terms"]) is True


def test_every_parameter_of_every_registered_loss_is_a_column():
    from cakd_viz.losses import LOSSES
    from cakd_viz.runs.results import loss_columns

    declared = {p.name for cls in LOSSES.values() for p in cls.params()}
    assert declared | {"ce_weight"} == set(loss_columns())
    assert {"grouping", "w_b", "alpha", "beta", "temperature", "warmup", "warmup_schedule"} <= declared
    assert set(loss_columns()) <= set(tracker_table([]).columns)
    headings = {k: c.heading for k, c in tracker.columns().items()}
    assert (headings["temperature"], headings["alpha"], headings["beta"]) == ("T", "α", "β")
    help_alpha = tracker.columns()["alpha"].help  # what each loss that takes it says
    assert "DKD: Weight of TCKD" in help_alpha and "CAKD: Weight of SCD" in help_alpha


def test_an_old_config_and_an_unknown_loss_keep_reading(runs):
    """A config.json written before losses declared their parameters holds every old field whatever its
    loss; a loss no longer registered shows its own name, never another's."""
    legacy = {"grouping": "topk:5", "temperature": 3.0, "w_b": 1.0, "alpha": 2.0, "beta": 8.0}
    legacy |= {"warmup": 0.0, "warmup_schedule": "epoch", "ce_weight": 1.0}
    write_run(runs, "20260102-000000-kd-aaaa", loss={"name": "kd"} | legacy)
    write_run(runs, "20260102-000001-foo-bbbb", loss={"name": "foo", "gain": 2.0})
    runs_ = {r.id: r for r in list_runs(runs)}
    table = tracker_table(list(runs_.values())).set_index("id")
    kd = table.loc["20260102-000000-kd-aaaa"]
    assert kd["temperature"] == 3.0 and pd.isna(kd["alpha"]) and pd.isna(kd["w_b"])
    assert runs_["20260102-000000-kd-aaaa"].label == "KD (T=3)"
    foo = table.loc["20260102-000001-foo-bbbb"]
    assert foo["loss"] == "foo" and runs_["20260102-000001-foo-bbbb"].label == "foo"
    assert all(pd.isna(foo[k]) for k in ("temperature", "alpha", "grouping"))
    from cakd_viz.runs import RunConfig  # the old form still reruns: `cakd-viz tune --config RUN/config.json`

    rerun = RunConfig.from_dict(store.read_json(runs / "20260102-000000-kd-aaaa" / store.CONFIG))
    assert rerun.loss.to_dict() == {
        "name": "kd",
        "temperature": 3.0,
        "warmup": 0.0,
        "warmup_schedule": "epoch",
        "standardize": False,  # a setting it did not hold: its declared default, as before
        "ce_weight": 1.0,
        "grouping": "topk:5",
    }


def test_accuracy_is_one_format_in_percent(runs):
    write_run(runs, "20260102-000000-kd-aaaa", accs=(0.9, 0.96), val_split=0.1, test_acc=0.8432)
    table = tracker_table(list_runs(runs))
    keys = ["run", "best_acc", "last_acc", "eval_split", "test_acc"]
    shown = tracker.view(table, keys).iloc[0]
    assert shown["best acc (%)"] == pytest.approx(96.0) and shown["test acc (%)"] == pytest.approx(84.32)
    assert shown["epochs on"] == "validation"
    config = tracker.column_config(keys)
    formats = {config[h]["type_config"]["format"] for h in ("best acc (%)", "last acc (%)", "test acc (%)")}
    assert formats == {"%.2f"}  # "96.00" beside "84.32", never "96", under headings in percent


def test_sorting_by_validation_accuracy_never_ranks_test_numbers_among_them(runs):
    write_run(runs, "20260102-000000-kd-aaaa", accs=(0.99,), name="old_on_test")
    write_run(runs, "20260102-000001-kd-bbbb", accs=(0.80,), name="val_low", val_split=0.1)
    write_run(runs, "20260102-000002-kd-cccc", accs=(0.90,), name="val_high", val_split=0.1)
    table = tracker_table(list_runs(runs))
    order = tracker.sorted_table(table, "best validation accuracy")
    assert list(order["run"]) == ["val_high", "val_low", "old_on_test"]
    labels = tracker.run_labels(table)
    assert labels["20260102-000000-kd-aaaa"].endswith("no validation: test split")
    assert "no validation" not in labels["20260102-000001-kd-bbbb"]


def test_a_corrupt_or_odd_folder_does_not_break_the_table(runs):
    path = write_run(runs, "20260102-000000-kd-aaaa", loss={"name": "kd"})
    store.write_json(path / store.CONFIG, {"loss": [1], "seed": "x", "lr": None})
    (runs / "20260102-000002-broken").mkdir()
    table = tracker_table(list_runs(runs)).set_index("id")
    assert pd.isna(table.loc["20260102-000000-kd-aaaa", "seed"])
    assert table.loc["20260102-000002-broken", "state"] == "corrupt"


def test_numbers_no_table_column_holds_read_as_missing_or_corrupt(runs):
    # a whole number beyond 64 bits reached the tracker's numeric columns as a Python int, which Arrow
    # refuses ('Python int too large to convert to C long'; Streamlit then shows the column as text)
    import pyarrow  # Streamlit's own dependency

    odd = write_run(runs, "20260102-000000-kd-aaaa", loss={"name": "kd"})
    store.write_json(odd / store.CONFIG, {"loss": {"name": "kd"}, "lr": 10**400, "batch_size": 2**64})
    big = write_run(runs, "20260102-000001-kd-bbbb", loss={"name": "kd"})
    store.write_json(big / store.CONFIG, {"loss": {"name": "kd"}, "seed": 2**64})
    table = tracker_table(list_runs(runs)).set_index("id")
    assert pd.isna(table.loc[odd.name, "lr"]) and pd.isna(table.loc[odd.name, "batch"])
    assert table.loc[big.name, "state"] == "corrupt"
    assert table.loc[big.name, "error"].startswith("config.json: 'seed' must be a whole number, found 1844")
    pyarrow.Table.from_pandas(table)


def test_notes_are_written_atomically_capped_and_cleaned(runs):
    path = write_run(runs, "20260102-000000-kd-aaaa")
    assert read_note(path) == ""
    assert write_note(path, "  good run\x07 \n second line ") == "good run \n second line"
    assert read_note(path) == "good run \n second line"
    assert (path / NOTE).read_text() == "good run \n second line\n"
    assert not [p for p in path.iterdir() if ".tmp-" in p.name]
    with pytest.raises(ValueError, match=f"at most {NOTE_MAX_CHARS:,}"):
        write_note(path, "x" * (NOTE_MAX_CHARS + 1))
    assert read_note(path).startswith("good run")  # a refused note changes nothing
    write_note(path, "")
    assert not (path / NOTE).exists()


def test_a_note_that_is_a_fifo_reads_as_none_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / NOTE)  # opening a FIFO for reading would wait for a writer forever
    assert read_note(tmp_path) == ""
    (tmp_path / NOTE).unlink()
    (tmp_path / NOTE).write_bytes(b"first\r\nsecond \xff" + "é".encode() * NOTE_MAX_CHARS)
    assert read_note(tmp_path) == ("first\nsecond \ufffd" + "é" * NOTE_MAX_CHARS)[:NOTE_MAX_CHARS]


def test_archive_restore_and_delete(runs):
    write_run(runs, "20260102-000000-kd-aaaa")
    moved = archive_run(runs, "20260102-000000-kd-aaaa")
    assert moved == runs / ".archive" / "20260102-000000-kd-aaaa" and list_runs(runs) == []
    assert [r.id for r in list_archived(runs)] == ["20260102-000000-kd-aaaa"]
    restore_run(runs, "20260102-000000-kd-aaaa")
    assert [r.id for r in list_runs(runs)] == ["20260102-000000-kd-aaaa"]
    delete_run(runs, "20260102-000000-kd-aaaa")
    assert list_runs(runs) == [] and list_archived(runs) == []
    assert [p.name for p in runs.iterdir()] == [".archive"] and not any((runs / ".archive").iterdir())


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/b", ".archive", "", "x" * 300, "nope"])
def test_only_run_ids_under_the_runs_directory_are_accepted(runs, bad):
    (runs.parent / "x").mkdir()
    with pytest.raises(ValueError):
        delete_run(runs, bad)
    assert (runs.parent / "x").is_dir()


def test_a_running_run_is_never_archived_or_deleted(runs):
    write_run(runs, "20260102-000000-kd-aaaa", state="running")
    with pytest.raises(ValueError, match="cancel it first"):
        delete_run(runs, "20260102-000000-kd-aaaa")
    with pytest.raises(ValueError, match="cancel it first"):
        archive_run(runs, "20260102-000000-kd-aaaa")
    assert (runs / "20260102-000000-kd-aaaa" / store.CONFIG).is_file()


# -- the Tune page ----------------------------------------------------------------------------------------


def _tune(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page("cakd_viz/app/pages/tune.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _tracker(at: AppTest):
    return next(d.value for d in at.dataframe if "best acc (%)" in d.value)


def test_the_tracker_filters_and_sorts(runs):
    _sweep(runs, ACCS)
    write_run(runs, "20260102-000000-kd-aaaa", loss={"name": "kd"}, name="my_kd", accs=(0.5, 0.99))
    write_run(runs, "20260102-000001-kd-cccc", loss={"name": "kd"}, state="failed")
    at = _tune()
    table = _tracker(at)
    assert len(table) == 14
    headings = {
        "T",
        "w_b",
        "α",
        "β",
        "warm-up",
        "lr",
        "seed",
        "grouping",
        "best acc (%)",
        "epochs on",
        "test acc (%)",
    }
    assert headings <= set(table.columns)
    at.multiselect(key="tune_f_loss").set_value(["kd"]).run()
    assert set(_tracker(at)["loss"]) == {"kd"} and len(_tracker(at)) == 2
    at.multiselect(key="tune_f_state").set_value(["done"]).run()
    assert list(_tracker(at)["run"]) == ["my_kd"]
    at.multiselect(key="tune_f_state").set_value([]).run()
    at.multiselect(key="tune_f_loss").set_value([]).run()
    at.selectbox(key="tune_sort").set_value("test accuracy").run()
    at.selectbox(key="tune_sort").set_value("best validation accuracy").run()
    assert _tracker(at)["run"].iloc[0] == "alpha=2 · beta=8 · seed=2"  # 98.5% on validation
    last = _tracker(at).iloc[-2:]  # my_kd's 99% is on the test split: after every validation number
    assert last["run"].tolist() == ["my_kd", "KD (T=4)"] and set(last["epochs on"]) == {"test: no validation"}
    at.text_input(key="tune_f_text").set_value("seed=2").run()
    assert len(_tracker(at)) == 4


def test_the_run_view_shows_held_out_terms_or_says_they_are_missing(runs):
    write_run(runs, "20260102-000000-kd-aaaa", terms=False, created=1)
    write_run(runs, "20260102-000001-cakd-bbbb", terms=True, created=2)
    at = _tune()
    assert at.selectbox(key="tune_run").value == "20260102-000001-cakd-bbbb"  # the newest
    figures = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("held-out mean part of the KL" in f for f in figures)
    at.toggle(key="tune_run_raw").set_value(True).run()
    assert any("held-out mean, raw term" in c.proto.spec for c in at.get("plotly_chart"))
    at.selectbox(key="tune_run").set_value("20260102-000000-kd-aaaa").run()
    assert at.query_params["run"] == "20260102-000000-kd-aaaa"
    assert any("no held-out decomposition" in i.value for i in at.info)


def test_the_held_out_curves_say_whether_the_runs_split_is_of_standardized_logits(runs):
    write_run(runs, "20260102-000000-kd-aaaa", loss={"name": "kd", "standardize": True}, created=1)
    write_run(runs, "20260102-000001-cakd-bbbb", created=2)
    at = _tune()
    assert any("its logits as they are (no LS)" in c.value for c in at.caption)
    at.selectbox(key="tune_run").set_value("20260102-000000-kd-aaaa").run()
    assert any("standardized per sample (LS), as it trains on them" in c.value for c in at.caption)
    label = next(r for r in list_runs(runs) if r.id == "20260102-000000-kd-aaaa").label
    assert label == "KD + LS (T=4)"
    assert tracker_table(list_runs(runs)).set_index("id").loc["20260102-000000-kd-aaaa", "standardize"]


def test_compare_runs_offers_the_held_out_terms_and_names_runs_without_them(runs):
    write_run(runs, "20260102-000000-kd-aaaa", terms=False, created=1, name="old")
    write_run(runs, "20260102-000001-cakd-bbbb", terms=True, created=2, name="new")
    at = _tune()
    at.selectbox(key="curve").set_value("val_scd_part").run()
    assert any(c.value.startswith("Without held-out mean p_S·SCD (nats): old") for c in at.caption)


def test_new_runs_join_the_selectors_without_a_reload(runs):
    write_run(runs, "20260102-000000-kd-aaaa", created=1)
    at = _tune()
    assert _compared(at).value == ["20260102-000000-kd-aaaa"]
    write_run(runs, "20260102-000001-kd-bbbb", created=2)
    at.run()  # what the polling fragment does every few seconds
    assert any("20260102-000001-kd-bbbb" in o for o in at.selectbox(key="tune_run").options)
    assert _compared(at).value[0] == "20260102-000001-kd-bbbb"
    _compared(at).set_value(["20260102-000000-kd-aaaa"]).run()
    write_run(runs, "20260102-000002-kd-cccc", created=3)
    at.run()
    assert _compared(at).value == ["20260102-000000-kd-aaaa"]  # a choice is kept
    assert any("20260102-000002-kd-cccc" in o for o in _compared(at).options)


def _compared(at: AppTest):
    return next(m for m in at.multiselect if m.label == "Runs")


def test_note_archive_and_delete_from_the_page(runs):
    write_run(runs, "20260102-000000-kd-aaaa", created=1)
    write_run(runs, "20260102-000001-kd-bbbb", created=2)
    at = _tune(run="20260102-000000-kd-aaaa")
    at.text_area(key="note_20260102-000000-kd-aaaa").set_value("lr too high?")
    next(b for b in at.button if b.label == "Save note").click().run()
    assert read_note(runs / "20260102-000000-kd-aaaa") == "lr too high?"
    assert "lr too high?" in list(_tracker(at)["note"])
    next(b for b in at.button if b.label == "Delete…").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    assert (runs / "20260102-000000-kd-aaaa").is_dir()  # nothing happens before the confirmation
    next(b for b in at.button if b.label.startswith("Yes, delete")).click().run()
    assert not (runs / "20260102-000000-kd-aaaa").exists()
    at.selectbox(key="tune_run").set_value("20260102-000001-kd-bbbb").run()
    next(b for b in at.button if b.label == "Archive").click().run()
    assert (runs / ".archive" / "20260102-000001-kd-bbbb").is_dir() and list_runs(runs) == []


def test_a_running_run_cannot_be_archived_or_deleted_from_the_page(runs):
    write_run(runs, "20260102-000000-kd-aaaa", state="running")
    at = _tune()
    assert next(b for b in at.button if b.label == "Delete…").disabled
    assert next(b for b in at.button if b.label == "Archive").disabled


def test_the_sweep_heatmap_defaults_to_the_varied_values_and_averages_seeds(runs):
    _sweep(runs, ACCS)
    at = _tune()
    assert (at.selectbox(key="tune_hx").value, at.selectbox(key="tune_hy").value) == ("alpha", "beta")
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    trace = next(s["data"][0] for s in specs if s["data"] and s["data"][0]["type"] == "heatmap")
    assert trace["zmax"] - trace["zmin"] >= 5.0  # a 0.7-point spread does not fill the colour scale
    assert "colours" in trace["colorbar"]["title"]["text"]
    texts = [t for row in trace["text"] for t in row]
    assert "98.2% ± 0.3 (n=3)" in texts  # (1, 8): mean of 98.0, 98.1, 98.5 and its standard deviation
    assert trace["colorbar"]["title"]["text"].startswith("best validation accuracy")
    caption = next(c.value for c in at.caption if c.value.startswith("Mean best validation accuracy"))
    assert "seed averaged" in caption and "Colours span" in caption and "test split" not in caption
    at.selectbox(key="tune_hy").set_value("(averaged)").run()
    assert not at.exception


def test_a_sweep_without_validation_says_its_heatmap_is_on_the_test_split(runs):
    _sweep(runs, ACCS, val_split=None)  # trials made before runs held out a validation split
    at = _tune()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    trace = next(s["data"][0] for s in specs if s["data"] and s["data"][0]["type"] == "heatmap")
    assert trace["colorbar"]["title"]["text"].startswith("best test (no validation split) accuracy")
    caption = next(c.value for c in at.caption if c.value.startswith("Mean best test-split accuracy"))
    assert "no validation split" in caption


def test_a_sweep_mixing_splits_averages_only_its_validation_trials(runs):
    _sweep(runs, ACCS, unvalidated=3)  # the three seeds of (alpha 1, beta 4) were evaluated on the test split
    at = _tune()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    trace = next(s["data"][0] for s in specs if s["data"] and s["data"][0]["type"] == "heatmap")
    texts = [t for row in trace["text"] for t in row]
    assert "" in texts and "98.2% ± 0.3 (n=3)" in texts  # the (1, 4) cell is empty, not a test number
    caption = next(c.value for c in at.caption if c.value.startswith("Mean best validation accuracy"))
    assert "3 trials without a validation split (accuracy on the test split) left out" in caption


def test_a_sweep_that_varies_nothing_lists_its_trials_as_the_tracker_does(runs):
    write_run(runs, f"{SWEEP}-000", accs=(0.9, 0.96), test_acc=0.8432, val_split=0.1, sweep=SWEEP, params={})
    write_sweep(runs, SWEEP, [f"{SWEEP}-000"], {})
    at = _tune()
    trials = next(d.value for d in at.dataframe if "run id" in d.value and len(d.value) == 1).iloc[0]
    assert trials["run id"] == f"{SWEEP}-000" and trials["epochs on"] == "validation"
    assert trials["best acc (%)"] == pytest.approx(96.0) and trials["test acc (%)"] == pytest.approx(84.32)
    assert "best_acc" not in trials  # no raw key, no fraction under a heading without a unit


def test_a_link_to_an_unknown_run_says_so(runs):
    write_run(runs, "20260102-000000-kd-aaaa")
    at = _tune(run="zzz")
    assert any("run=`zzz`" in w.value and "showing" in w.value for w in at.warning)


def test_compare_with_the_bundles_students(runs, tmp_path):
    student, teacher, labels = make_logits(150, 6, seed=2)
    write_bundle(
        tmp_path / "data" / "base", teacher=teacher, students={"ce": student}, labels=labels, dtype="float16"
    )
    tuned = (0.3 * student + 0.7 * teacher).astype(np.float32)
    arrays = {"teacher": teacher, "students": {"tuned": tuned}, "labels": labels}
    write_run(runs, "20260102-000000-cakd-aaaa", bundle=arrays, data="own.npz")
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["bundle"] = "path:base"
    at.run()  # the Overview on the base bundle: the open bundle the run is compared with
    at.switch_page("cakd_viz/app/pages/tune.py")
    at.run()
    next(b for b in at.button if b.label == "Compare with the bundle's students").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Overview"
    assert at.query_params["runs"] == "20260102-000000-cakd-aaaa"
    name = "run:CAKD topk:5 (1-1-8, T=4)"  # the run's student, named by the run's name
    assert at.selectbox(key="vs").value == name
    assert name in at.selectbox(key="student").options
    assert not at.warning
    assert sorted(p.name for p in (tmp_path / "data" / "base" / "students").iterdir()) == ["ce.npy"]


def test_the_tune_pages_snippet_prints_the_tracker_table(runs):
    import io
    import subprocess
    import sys

    from cakd_viz import export

    _sweep(runs, ACCS)
    code = export.runs_snippet(str(runs))
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = pd.read_csv(io.StringIO(out.stdout))
    want = tracker_table(list_runs(runs))
    assert list(got["id"]) == list(want["id"])
    np.testing.assert_allclose(got["best_acc"], want["best_acc"])
    assert list(got["run"]) == list(want["run"])


def test_a_run_before_its_first_epoch_says_it_is_waiting(runs):
    write_run(runs, "20260102-000000-kd-aaaa", state="running", accs=())
    at = _tune()
    bars = [p.proto.text for p in at.get("progress")]
    assert len(bars) == 1 and "running: waiting for the first epoch to end, started" in bars[0]
    assert "epoch 0/" not in bars[0]
    assert any(i.value.startswith("Waiting for the first epoch") for i in at.info)
    assert not at.get("plotly_chart")  # no empty chart with axes from -1
    assert any(c.value.startswith("Waiting for the first epoch of a run") for c in at.caption)


def test_an_empty_curve_figure_says_so_instead_of_drawing_axes():
    from cakd_viz.figures.runs import EMPTY, curves_figure

    fig = curves_figure({"a run": pd.DataFrame()}, "val_acc")
    assert not fig.data and [a.text for a in fig.layout.annotations] == [EMPTY]
    assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
    frame = pd.DataFrame({"epoch": [1, 2], "val_acc": [0.5, 0.6]})
    drawn = curves_figure({"a run": frame}, "val_acc", splits=["validation"])
    assert drawn.layout.yaxis.title.text == "validation accuracy" and not drawn.layout.annotations
    mixed = curves_figure({"a": frame, "b": frame}, "val_acc", splits=["validation", "test"])
    assert mixed.layout.yaxis.title.text == "held-out accuracy (validation, or test for runs without one)"


def test_compare_runs_marks_the_runs_without_validation(runs):
    write_run(runs, "20260102-000000-kd-aaaa", created=1, name="old")
    write_run(runs, "20260102-000001-kd-bbbb", created=2, name="new", val_split=0.1)
    at = _tune()
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "tune_curves" in c.proto.id)
    names = [t["name"] for t in spec["data"]]
    assert names == [
        "new (20260102-000001-kd-bbbb)",
        "old (20260102-000000-kd-aaaa) · no validation: test split",
    ]
    assert "validation, or test for runs without one" in spec["layout"]["yaxis"]["title"]["text"]
    assert any(
        "Runs marked 'no validation: test split' show test-split numbers" in c.value for c in at.caption
    )
