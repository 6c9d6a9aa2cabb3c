from common.problems import Problems
from data.families import assign_families
from data.metadata import Entry


def entries(*rows):
    return {v: Entry(v, label, original, "train", f"m.csv:{i}") for i, (v, label, original) in enumerate(rows)}


def test_fakes_join_their_real_original_and_unlisted_originals_still_group():
    problems = Problems()
    fam = assign_families(entries(("r.mp4", 0, None), ("f1.mp4", 1, "r.mp4"), ("f2.mp4", 1, "r.mp4"),
                                  ("g1.mp4", 1, "gone.mp4"), ("g2.mp4", 1, "gone.mp4")), problems)
    assert fam == {"r.mp4": "r.mp4", "f1.mp4": "r.mp4", "f2.mp4": "r.mp4",
                   "g1.mp4": "gone.mp4", "g2.mp4": "gone.mp4"}
    assert problems.count("FAKE videos whose original is not listed") == 2


def test_chains_cycles_and_bad_links_warn_but_stay_one_family():
    problems = Problems()
    fam = assign_families(entries(("r.mp4", 0, None), ("f.mp4", 1, "r.mp4"), ("ff.mp4", 1, "f.mp4"),
                                  ("c1.mp4", 1, "c2.mp4"), ("c2.mp4", 1, "c1.mp4"),
                                  ("r2.mp4", 0, "r.mp4"), ("lone.mp4", 1, None)), problems)
    assert fam["ff.mp4"] == "r.mp4"
    assert fam["c1.mp4"] == fam["c2.mp4"] == "c1.mp4"
    assert fam["r2.mp4"] == "r2.mp4" and fam["lone.mp4"] == "lone.mp4"
    assert problems.count("originals that are themselves FAKE (chain followed)") == 3
    assert problems.count("REAL videos with an original set (ignored)") == 1
    assert problems.count("FAKE videos without an original (own family)") == 1
