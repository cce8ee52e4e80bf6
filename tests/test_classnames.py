"""Readable class names: look-alike glyphs spelled out, duplicates told apart, override files checked."""

from __future__ import annotations

import json
import string

import pytest

from cakd_viz.classnames import (
    MAX_NAME_CHARS,
    OVERRIDE_MAX_BYTES,
    has_lookalikes,
    parse_override,
    readable_names,
    spell_out,
)
from cakd_viz.data.glyphs import CLASS_NAMES

# what charts and tables show of the glyph classes: "I (upper i)", "l (lower L)", "1 (digit)", ...
DISPLAY_NAMES = tuple(spell_out(c) for c in CLASS_NAMES)


def test_the_glyph_look_alikes_read_differently():
    shown = dict(zip(CLASS_NAMES, DISPLAY_NAMES, strict=True))
    assert shown["I"] == "I (upper i)" and shown["l"] == "l (lower L)" and shown["1"] == "1 (digit)"
    assert shown["O"] == "O (upper o)" and shown["o"] == "o (lower o)" and shown["0"] == "0 (digit)"
    assert len(set(DISPLAY_NAMES)) == len(CLASS_NAMES) == 62
    # written without the ambiguous characters' own shapes: each says its kind in words
    for raw, text in shown.items():
        assert text.startswith(raw + " (") and text.endswith(")")


def test_readable_names_of_the_glyphs_bundle_are_the_display_names():
    assert readable_names(list(CLASS_NAMES)) == list(DISPLAY_NAMES)


def test_names_without_look_alikes_stay_as_they_are():
    assert not has_lookalikes(["cat", "dog", "A", "B"])
    assert readable_names(["cat", "dog", "A", "B"]) == ["cat", "dog", "A", "B"]
    assert readable_names(list(string.digits)) == list(string.digits)


def test_empty_repeated_and_long_names():
    names = readable_names(["", "x" * 100, "cat", "cat", "a\nb"])
    assert names[0] == "class 0"
    assert len(names[1]) == 60 and names[1].endswith("…")
    assert names[2:4] == ["cat #2", "cat #3"]
    assert names[4] == "a b"
    assert len(set(names)) == len(names)


def test_a_told_apart_name_never_meets_a_raw_name_that_reads_the_same():
    names = readable_names(["a", "a", "a #1"])  # "a" at index 1 becomes "a #1", as the third one reads
    assert names[0] == "a #0" and len(set(names)) == 3


def test_long_names_told_apart_stay_within_the_limit():
    names = readable_names(["x" * 100, "x" * 100, "y" * 59 + "z", "y" * 59 + "z"])
    assert len(set(names)) == 4 and all(len(n) <= MAX_NAME_CHARS for n in names)
    assert names[0].endswith("… #0") and names[3].endswith("… #3")


def test_spell_out_leaves_anything_else():
    assert spell_out("cat") == "cat" and spell_out("é") == "é" and spell_out("") == ""


def test_override_files_json_and_text():
    assert parse_override(json.dumps(["a", "b", "c"]).encode(), "n.json", 3) == ["a", "b", "c"]
    assert parse_override(b"cat\ndog\nfox\n", "n.txt", 3) == ["cat", "dog", "fox"]
    assert parse_override("\ufeffé\nü\n".encode(), "n.txt", 2) == ["é", "ü"]


def test_a_text_file_whose_first_name_starts_with_a_bracket_is_read_line_by_line():
    assert parse_override(b"[background]\ncat\n", "n.txt", 2) == ["[background]", "cat"]
    assert parse_override(b'["a", "b"]', "n.txt", 2) == ["a", "b"]  # JSON under another name still is


def test_a_text_file_splits_names_at_line_ends_only():
    data = "a\u2028b\r\nc\x0cd\re\n".encode()  # U+2028 and form feed inside names; CRLF and CR end lines
    assert parse_override(data, "n.txt", 3) == ["a\u2028b", "c\x0cd", "e"]


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"a\nb\n", "n.txt", "2 names for 3 classes"),
        (b'{"a": 1}', "n.json", "must be a list of strings"),
        (b"[1, 2, 3]", "n.json", "must be a list of strings"),
        (b"[1, 2", "n.json", "not valid JSON"),
        (b"[" + b"9" * 5000 + b"]", "n.json", r"not valid JSON \(a number of more than 4300 digits\)$"),
        (b"\xff\xfe\x00", "n.txt", "not UTF-8"),
        (b"x" * (OVERRIDE_MAX_BYTES + 1), "n.txt", "at most"),
        (("y" * 300 + "\nb\nc").encode(), "n.txt", "longer than 200"),
    ],
)
def test_bad_override_files_are_refused_in_one_line(data, name, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_override(data, name, 3)
    assert name in str(err.value) and "\n" not in str(err.value)
