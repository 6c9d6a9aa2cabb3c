"""Each saved artifact's definition: a round trip, and a damaged file refused in one line naming the file and the
entry (fit.json, protocols.json, the chunk manifest, ensemble.json, every kind of saved combiner)."""
import inspect
import json

import numpy as np
import pytest

from common.errors import DataError
from ensemble.calibration import Calibrator
from ensemble.records import (
    CHOSEN,
    FULL,
    AblationRecord,
    Choice,
    FitRecord,
    FrameBudgetRecord,
    MethodFit,
    ProtocolsRecord,
)
from ensemble.rules import Rule
from ensemble.saved import READERS, EnsembleMeta, load_stacker, write_ensemble
from ensemble.stackers import (
    Alias,
    Average,
    EnsembleSelection,
    LightGBMStack,
    LogisticStack,
    RankMean,
    SplineStack,
    WeightedBlend,
)
from extract.cache import ChunkManifest
from test_ensemble import _toy_columns


def one_line(excinfo, *words):
    text = str(excinfo.value)
    assert "\n" not in text and all(w in text for w in words), text


def fit_record(nested: bool = True) -> FitRecord:
    methods = {"blend/mean": MethodFit(True, 0.61, {"clip_0.001": 0.6, "platt": 0.55}, "platt", 0.55),
               "stack/logistic": MethodFit(False, 0.42, {"platt": 0.4}, "platt", 0.4)}
    choice = Choice("stack/logistic", 0.4, 0.43, ("stack/logistic", "stack/logistic")) if nested else \
        Choice("stack/logistic", 0.4)
    return FitRecord(0.7, methods, CHOSEN if nested else "stack/logistic", choice)


def protocols_record(ablation: bool = True) -> ProtocolsRecord:
    budget = FrameBudgetRecord((1, 0), 12, {1: "stack/logistic", 0: "blend/weighted"},
                               {1: {"a": 1.0, "b": 1.0}, 0: {"a": 7.5, "b": 7.5}}, {"a": 400.0, "b": None},
                               {1: None, 0: None}, ("stack/logistic", CHOSEN))
    abl = AblationRecord(("a", "b"), {FULL: "blend/weighted", "a": "stack/logistic", "b": "blend/weighted"},
                         ("stack/logistic", CHOSEN)) if ablation else None
    return ProtocolsRecord(budget, abl)


@pytest.mark.parametrize("record", [fit_record(), fit_record(nested=False), protocols_record(),
                                    protocols_record(ablation=False)])
def test_records_round_trip_through_their_files(record, tmp_path):
    path = tmp_path / "record.json"
    record.write(path)
    assert type(record).read(path) == record
    assert json.loads(path.read_text()) == record.to_json()


@pytest.mark.parametrize("cls, record, damage, words", [
    (FitRecord, fit_record(), lambda o: o.update(prior=1.5), "prior = 1.5"),
    (FitRecord, fit_record(), lambda o: o.pop("best_method"), "best_method = None"),
    (FitRecord, fit_record(), lambda o: o["methods"]["stack/logistic"].update(oof_log_loss="x"),
     "methods.stack/logistic.oof_log_loss = 'x'"),
    (FitRecord, fit_record(), lambda o: o["chosen"].update(chosen_per_fold=[]), "chosen.chosen_per_fold = []"),
    (ProtocolsRecord, protocols_record(), lambda o: o["frame_budget"]["crops_per_video"].pop("1"),
     "frame_budget.crops_per_video.1 = None"),
    (ProtocolsRecord, protocols_record(), lambda o: o["frame_budget"].update(budgets=[1, 1]),
     "frame_budget.budgets = [1, 1]"),
    (ProtocolsRecord, protocols_record(), lambda o: o["ablation"].update(backbones=["a", FULL]),
     "ablation.backbones = ['a', 'none']"),
    (ProtocolsRecord, protocols_record(), lambda o: o["frame_budget"].update(learned="x"),
     "frame_budget.learned = 'x'"),
])
def test_a_damaged_record_is_one_line_naming_the_file_and_the_entry(cls, record, damage, words, tmp_path):
    obj = record.to_json()
    damage(obj)
    path = tmp_path / "record.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError) as e:
        cls.read(path)
    one_line(e, str(path), words)
    path.write_text('{"prior": ')
    with pytest.raises(DataError) as e:
        cls.read(path)
    one_line(e, str(path), "not readable JSON")


def test_the_chunk_manifest_round_trips_and_a_damaged_one_is_one_line(tmp_path):
    path = tmp_path / "manifest.json"
    ChunkManifest("k" * 64, 3, "smallcnn").write(path)
    assert ChunkManifest.read(path) == ChunkManifest("k" * 64, 3, "smallcnn")
    for text, words in (('{"key": "k", "chunks": 0, "backbone": "b"}', "chunks = 0"),
                        ('{"key": "k", "chunks": true, "backbone": "b"}', "chunks = True"),
                        ('{"chunks": 2, "backbone": "b"}', "key = None"),
                        ('["k"]', "JSON object"), ('{"key": "k", "chu', "not a readable chunk manifest")):
        path.write_text(text)
        with pytest.raises(DataError) as e:
            ChunkManifest.read(path)
        one_line(e, str(path), words)


def combiners():
    """Every kind of saved combiner, fitted on toy columns: {method: (combiner or None, calibrator)}."""
    X, y, groups = _toy_columns()
    cols = list(X.columns)
    platt = Calibrator("platt").fit(X["c0"].to_numpy(), y)
    lgb_params = {"num_leaves": 4, "n_estimators": 10, "learning_rate": 0.1, "early_stopping_rounds": 5,
                  "min_child_samples": 5}
    fitted = {
        "blend/weighted": WeightedBlend(cols).fit(X, y),
        "stack/logistic": LogisticStack(cols, 0.5).fit(X, y),
        "stack/spline": SplineStack(cols, 0.5).fit(X, y),
        "blend/caruana": EnsembleSelection(cols, 5, 3).fit(X, y),
        "blend/rank_mean": RankMean(cols).fit(X, y),
        "stack/lightgbm": LightGBMStack(cols, lgb_params, 0, base_columns=cols, base="weighted").fit(X, y, groups),
    }
    saved = {m: (model, platt) for m, model in fitted.items()}
    saved["stack/average"] = (Average([fitted["stack/lightgbm"], fitted["stack/logistic"]], "logit",
                                      ["stack/lightgbm", "stack/logistic"]), platt)
    saved["blend/mean"] = (None, platt)
    saved[CHOSEN] = (Alias("stack/spline"), platt)
    return X, saved


def test_every_saved_combiner_names_its_kind_and_loads_through_one_registry(tmp_path):
    X, saved = combiners()
    meta = EnsembleMeta(("c0", "c1"), (Rule.parse("mean"), Rule.parse("max")), 0.6, {}, CHOSEN)
    write_ensemble(tmp_path / "e", saved, meta)
    assert EnsembleMeta.read(tmp_path / "e/ensemble.json") == meta
    for method, (model, calibrator) in saved.items():
        path = tmp_path / "e" / method.replace("/", "_")
        kind = json.loads(path.with_suffix(".json").read_text())["kind"]
        assert kind in READERS
        loaded, cal = load_stacker(path)
        assert cal.to_json() == calibrator.to_json()
        if model is None:
            assert loaded is None and kind == "plain_mean"
            continue
        target = saved[model.method][0] if isinstance(model, Alias) else model
        np.testing.assert_array_equal(loaded.predict_proba(X), target.predict_proba(X), err_msg=method)


@pytest.mark.parametrize("damage, words", [
    (lambda o: o.pop("kind"), "KeyError: 'kind'"),
    (lambda o: o.update(kind="forest"), "unknown kind 'forest'"),
    (lambda o: o.update(calibrator={"kind": "magic", "params": {}}), "unknown calibrator 'magic'"),
])
def test_a_saved_combiner_without_a_known_kind_is_refused_in_one_line(damage, words, tmp_path):
    """No guessing of the kind from the keys: a file that does not name a known kind is refused."""
    _, saved = combiners()
    write_ensemble(tmp_path / "e", {"blend/weighted": saved["blend/weighted"]},
                   EnsembleMeta(("c0",), (Rule.parse("mean"),), 0.5, {}, "blend/weighted"))
    path = tmp_path / "e/blend_weighted.json"
    obj = json.loads(path.read_text())
    damage(obj)
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError) as e:
        load_stacker(path.with_suffix(""))
    one_line(e, str(path), "not a saved combiner", words)


def test_a_damaged_ensemble_record_is_one_line(tmp_path):
    path = tmp_path / "ensemble.json"
    meta = EnsembleMeta(("a", "b"), (Rule.parse("mean"),), 0.5, {"a": {"mean": [0.0, 1.0], "components": [[1.0]]}},
                        "stack/chosen")
    path.write_text(json.dumps(meta.to_json()))
    with pytest.raises(DataError) as e:
        EnsembleMeta.read(path)
    one_line(e, str(path), "not a saved ensemble", "PCA of a")


def test_lightgbm_stack_fit_keeps_the_signature_of_the_other_combiners():
    """``fit(X, y, groups=None)`` positionally, as every combiner; the rows to early-stop on are keyword-only."""
    for cls in (WeightedBlend, LogisticStack, SplineStack, EnsembleSelection, RankMean, LightGBMStack):
        params = list(inspect.signature(cls.fit).parameters.values())
        assert [p.name for p in params[:4]] == ["self", "X", "y", "groups"], cls
        assert all(p.kind is p.KEYWORD_ONLY for p in params[4:]), cls
