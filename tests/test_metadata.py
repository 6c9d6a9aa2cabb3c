import json

import pytest

from common.errors import DataError
from data.metadata import merge_entries, parse_label, read_metadata_csv, read_metadata_json, video_name


def test_cat_of_parts_with_repeated_headers_and_different_column_orders(tmp_path):
    # what `cat part0/metadata.csv part1/metadata.csv > metadata.csv` leaves behind
    path = tmp_path / "metadata.csv"
    path.write_text(
        "filename,split,original,label\n"
        "aaa.mp4,train,,REAL\n"
        "bbb.mp4,train,aaa.mp4,FAKE\n"
        "label,original,filename,split\n"
        "FAKE,ccc.mp4,ddd.mp4,train\n"
        "REAL,,ccc.mp4,train\n"
        "\n"
        "label,original,filename,split\n")
    entries = read_metadata_csv(path)
    got = {e.video: (e.label, e.original, e.split) for e in entries}
    assert got == {"aaa.mp4": (0, None, "train"), "bbb.mp4": (1, "aaa.mp4", "train"),
                   "ddd.mp4": (1, "ccc.mp4", "train"), "ccc.mp4": (0, None, "train")}
    assert entries[2].source == f"{path}:5"


def test_extra_columns_bom_and_crlf_are_kept(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_bytes("\ufefffilename,label,original,split,method\r\nx.mp4,FAKE,y.mp4,train,seam\r\n".encode())
    (entry,) = read_metadata_csv(path)
    assert (entry.video, entry.label, entry.extra) == ("x.mp4", 1, {"method": "seam"})


def test_identical_duplicates_dropped_conflicting_duplicate_names_both_rows(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("filename,split,original,label\nx.mp4,train,,REAL\ny.mp4,train,x.mp4,FAKE\n")
    b.write_text("filename,label,split,original\ny.mp4,FAKE,train,x.mp4\n")
    merged = merge_entries(read_metadata_csv(a) + read_metadata_csv(b))
    assert list(merged.entries) == ["x.mp4", "y.mp4"] and merged.duplicates_dropped == 1

    b.write_text("filename,label,split,original\ny.mp4,REAL,train,\n")
    with pytest.raises(DataError) as err:
        merge_entries(read_metadata_csv(a) + read_metadata_csv(b))
    msg = str(err.value)
    assert f"{a}:3" in msg and f"{b}:2" in msg and "y.mp4" in msg and "\n" not in msg


@pytest.mark.parametrize("body, where, words", [
    ("filename,split,original,label\nx.mp4,train,,MAYBE\n", ":2", "label 'MAYBE'"),
    ("filename,split,original,label\nx.mp4,train,REAL\n", ":2", "expected 4 fields"),
    ("x.mp4,train,,REAL\n", ":1", "no header"),
    ("filename,split,original,label\n,train,,REAL\n", ":2", "empty filename"),
])
def test_bad_rows_are_one_line_errors_naming_file_and_row(tmp_path, body, where, words):
    path = tmp_path / "metadata.csv"
    path.write_text(body)
    with pytest.raises(DataError) as err:
        read_metadata_csv(path)
    assert f"{path}{where}" in str(err.value) and words in str(err.value)


def test_dfdc_metadata_json_real_original_null_or_absent(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({
        "a.mp4": {"label": "REAL", "split": "train", "original": None},
        "b.mp4": {"label": "REAL", "split": "train"},
        "c.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"}}))
    got = {e.video: (e.label, e.original) for e in read_metadata_json(path)}
    assert got == {"a.mp4": (0, None), "b.mp4": (0, None), "c.mp4": (1, "a.mp4")}


@pytest.mark.parametrize("text, words", [
    ('{"a.mp4": {"label": "REAL"', "invalid JSON at line 1"),
    ('["a.mp4"]', "expected a JSON object"),
    ('{"a.mp4": "FAKE"}', "entry 'a.mp4'"),
    ('{"a.mp4": {"split": "train"}}', "entry 'a.mp4': no 'label'"),
    ('{"a.mp4": {"label": "fake-ish"}}', "entry 'a.mp4': label"),
])
def test_bad_metadata_json_names_the_entry(tmp_path, text, words):
    path = tmp_path / "metadata.json"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_metadata_json(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_labels_and_names():
    assert [parse_label(v, "x") for v in ("FAKE", "real", " Fake ", 1, "0", "", None, float("nan"))] == \
        [1, 0, 1, 1, 0, None, None, None]
    assert video_name("abc") == "abc.mp4" and video_name("dir/abc.mp4") == "abc.mp4"


def test_extra_columns_never_overwrite_computed_ones_and_index_columns_are_ignored(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(",filename,split,original,label,family,video\n0,x.mp4,train,,REAL,f1,v1\n")
    b.write_text(",filename,split,original,label,family,video\n5,x.mp4,train,,REAL,f1,v1\n")
    merged = merge_entries(read_metadata_csv(a) + read_metadata_csv(b))   # index 0 vs 5: not a conflict
    entry = merged.entries["x.mp4"]
    assert entry.extra == {"meta_family": "f1", "meta_video": "v1"} and merged.duplicates_dropped == 1


def test_repeated_keys_in_metadata_json_are_duplicates(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_text('{"a.mp4": {"label": "REAL"}, "a.mp4": {"label": "REAL"}}')
    assert merge_entries(read_metadata_json(path)).duplicates_dropped == 1
    path.write_text('{"a.mp4": {"label": "REAL"}, "a.mp4": {"label": "FAKE", "original": "b.mp4"}}')
    with pytest.raises(DataError, match="entry 'a.mp4' and .*entry 'a.mp4' disagree"):
        merge_entries(read_metadata_json(path))
