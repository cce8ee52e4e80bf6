"""Text from strangers shown as text: the one place that makes a string safe for where it is shown.

Names and values that come from files, uploads, links, run folders or libraries (class names, student
names, file names, run names and errors, URL values) may hold markup or control characters. Each way of
showing text has one function here:

- ``markdown``: inside Streamlit's Markdown (titles, captions, alerts, labels, metric values, popovers):
  every ASCII punctuation character backslash-escaped, control characters written out, so no link,
  image, HTML, LaTeX (``$``) or emphasis forms;
- ``code``: a value quoted inside a one-line message, as an inline code span (shown literally), cut to
  ``limit`` characters with the full length said;
- ``html``: inside Plotly's labels and hover text (which read a subset of HTML);
- ``terminal``: a line for a terminal: escape sequences and other control characters written out, so a
  name cannot set the window title, write the clipboard or clear the screen.
"""

from __future__ import annotations

import html as _html
import re

_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
ZWSP = "\u200b"  # zero-width space: breaks an address in two without showing
_AUTOLINK = re.compile(r"://|(?i:www)\.|@")  # what GFM's literal autolinks start from


def _visible(ch: str, keep: str = "") -> str:
    """``ch`` itself when printable (or in ``keep``), else its escape (``\\x1b``, ``\\u202e``)."""
    if ch.isprintable() or ch in keep:
        return ch
    return ascii(ch)[1:-1]


def terminal(value: object) -> str:
    """``value`` for a terminal line: newlines and tabs kept, every other control character (ESC, BEL,
    CR, C1 codes, bidirectional overrides) written out as an escape."""
    return "".join(_visible(ch, keep="\n\t") for ch in str(value))


def markdown(value: object) -> str:
    """``value`` made literal for Streamlit's Markdown (see the module's docstring). Streamlit's Markdown
    also turns bare addresses in text into links (``http://...``, ``www.``, ``name@host``), escapes or
    not: a zero-width space is put into each, so it reads the same and links nowhere."""
    text = _AUTOLINK.sub(lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], str(value))
    return "".join("\\" + ch if ch in _PUNCTUATION else _visible(ch, keep=ZWSP) for ch in text)


def code(value: object, limit: int = 80) -> str:
    """``value`` as a code span in a one-line message: control characters written out, backticks made
    quotes, cut at ``limit`` characters with the full length said."""
    text = str(value)
    cut = "".join(_visible(ch) for ch in text[:limit]).replace("`", "'")
    more = f"… ({len(text):,} characters)" if len(text) > limit else ""
    return f"`{cut}{more}`"


def a_type(value: object) -> str:
    """The type of ``value`` with its article, for a message: "a str", "an int", "an OrderedDict"."""
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeio' else 'a'} {kind}"


def html(value: object) -> str:
    """``value`` as a string that Plotly displays literally (no tags, no entities interpreted)."""
    return _html.escape(str(value), quote=False)
