"""Class names people can read: look-alike characters spelled out, duplicates told apart, and override lists.

Bundles keep their raw class names (``"l"``, ``"I"``, ``"1"``); what a page shows comes from
``readable_names``. In many fonts ``I`` (upper i), ``l`` (lower L) and ``1`` look the same, as do
``O``, ``o`` and ``0``; when a bundle's names hold such a pair, every single-character letter or digit
is shown with its kind spelled out: ``"I (upper i)"``, ``"l (lower L)"``, ``"1 (digit)"``.

``parse_override`` reads a user's replacement list (JSON list or one name per line), checked against
the bundle's number of classes and bounded in size, so a hostile file can only be refused.
"""

from __future__ import annotations

import string
from collections import Counter

from cakd_viz.validate import loads_json

# Characters that read alike in common sans-serif fonts (the glyphs sample's look-alike families, too).
LOOKALIKES: tuple[frozenset[str], ...] = (
    frozenset("0Oo"),
    frozenset("1Iil|"),
    frozenset("2Zz"),
    frozenset("5Ss"),
    *(frozenset({c, c.upper()}) for c in "cjkmpuvwxy"),
)
MAX_NAME_CHARS = 60  # a displayed name is cut to this many characters (the full name stays in the bundle)
OVERRIDE_MAX_BYTES = 1_000_000  # an override file larger than this is refused before it is parsed
OVERRIDE_MAX_NAME_CHARS = 200


def spell_out(ch: str) -> str:
    """A single letter or digit with its kind in words: "I (upper i)", "l (lower L)", "0 (digit)".

    Lower-case L is spelled with a capital ("lower L") because "lower l" reads like "lower I".
    Anything else is returned unchanged.
    """
    if len(ch) != 1 or ch not in string.ascii_letters + string.digits:
        return ch
    if ch.isdigit():
        return f"{ch} (digit)"
    if ch == "l":
        return "l (lower L)"
    if ch.isupper():
        return f"{ch} (upper {ch.lower()})"
    return f"{ch} (lower {ch})"


def has_lookalikes(names) -> bool:
    """Whether two of ``names`` are single characters of one look-alike family (e.g. "O" and "0")."""
    singles = {str(n) for n in names if len(str(n)) == 1}
    return any(len(singles & family) > 1 for family in LOOKALIKES)


def readable_names(names) -> list[str]:
    """Display names for raw class names (C strings -> C distinct, non-empty strings).

    Single letters and digits are spelled out when look-alikes are present; empty names become
    "class i"; long names are cut to MAX_NAME_CHARS; a name shown twice gets "#index" appended, so two
    classes never share a label in a chart.
    """
    raw = [str(n) for n in names]
    spell = has_lookalikes(raw)
    out = []
    for i, name in enumerate(raw):
        text = " ".join(name.split())  # newlines and tabs would break one-line labels
        if not text:
            text = f"class {i}"
        elif spell:
            text = spell_out(text)
        if len(text) > MAX_NAME_CHARS:
            text = text[: MAX_NAME_CHARS - 1] + "…"
        out.append(text)
    while len(set(out)) < len(out):  # again where a told-apart name meets a raw one ("a", "a", "a #1")
        seen = Counter(out)
        out = [_tagged(name, i) if seen[name] > 1 else name for i, name in enumerate(out)]
    return out


def _tagged(name: str, i: int) -> str:
    """``name`` told apart by its index ("cat #3"), cut first so that it stays within MAX_NAME_CHARS."""
    suffix = f" #{i}"
    if len(name) + len(suffix) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - len(suffix) - 1] + "…"
    return name + suffix


def parse_override(data: bytes, filename: str, num_classes: int) -> list[str]:
    """Class names from an uploaded file: a JSON list of strings, or a text file with one name per line.

    ValueError (one line, naming the file) when it is too large, not UTF-8, not a list of strings, or
    does not hold exactly ``num_classes`` names.
    """
    if len(data) > OVERRIDE_MAX_BYTES:
        raise ValueError(
            f"{filename}: {len(data):,} bytes; a class-name file may hold at most {OVERRIDE_MAX_BYTES:,}"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{filename}: not UTF-8 text") from None
    names = None
    if filename.lower().endswith(".json"):
        names = loads_json(text, filename)
    elif text.lstrip().startswith("["):  # JSON in a file of another name, or a first name such as "[bg]"
        try:
            names = loads_json(text, filename)
        except ValueError:
            names = None
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{filename}: the JSON must be a list of strings, one per class")
    else:
        # lines end at LF, CRLF or CR only (not splitlines: U+2028 or a form feed is part of a name)
        names = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        while names and not names[-1].strip():  # a trailing newline is not a class
            names.pop()
    if len(names) != num_classes:
        raise ValueError(f"{filename}: {len(names):,} names for {num_classes:,} classes")
    long = [i for i, n in enumerate(names) if len(n) > OVERRIDE_MAX_NAME_CHARS]
    if long:
        raise ValueError(f"{filename}: name {long[0]} is longer than {OVERRIDE_MAX_NAME_CHARS} characters")
    return [n.strip() for n in names]
