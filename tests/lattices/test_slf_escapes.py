"""SLF words as HTK writes and reads them: ``\\ooo`` octal bytes and backslash escapes (HShell.c
``ReWriteString``/``ParseString``)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattices.fsa_build import build_batch
from lattices.normalize import NormalizationRules
from lattices.slf import format_slf, htk_escape, htk_unescape, parse_slf

from tests.lattices.test_reader_writer import words_on_arcs


def htk_parse_string(data: bytes) -> bytes:
    """HTK's ParseString on one field value, byte by byte, as the C loop does it (a reference
    written from HShell.c's description, sharing nothing with lattices/slf.py)."""
    i, out, quote = 0, bytearray(), None
    if data[:1] in (b"'", b'"'):
        quote, i = data[0], 1
    while i < len(data):
        c = data[i]
        if c == quote or (quote is None and c in b" \t\n\v\f\r"):  # C isspace, C locale
            break
        if c == ord("\\"):
            i += 1
            octal = data[i:i + 3]
            if len(octal) == 3 and all(ord("0") <= d <= ord("7") for d in octal):
                c = (64 * (octal[0] - 48) + 8 * (octal[1] - 48) + (octal[2] - 48)) & 0xFF
                i += 2
            else:
                c = data[i] if i < len(data) else 0
        if c == 0:
            break
        out.append(c)
        i += 1
    return bytes(out)


def _slf(*words: str) -> str:
    links = "\n".join(f"J={j} S={j} E={j + 1} W={w} a=-1.0 l=-2.0" for j, w in enumerate(words))
    return f"VERSION=1.0\nN={len(words) + 1} L={len(words)}\n" + "\n".join(f"I={i}" for i in range(len(words) + 1)) + "\n" + links + "\n"


# what HTK (ReWriteString, ESCAPE_CHAR) writes for these words
HTK_WRITTEN = {"你好": r"\344\275\240\345\245\275", "'EM": r"\'EM", "A\\B": r"A\\B", "CAFÉ": r"CAF\303\211"}


@pytest.mark.parametrize("field_order", ["table", "lines"])
def test_htk_escapes_are_read_as_the_words(field_order):
    text = _slf(*HTK_WRITTEN.values())
    if field_order == "lines":  # a field order the table parser does not take: the line parser reads it
        text = text.replace(" a=-1.0 l=-2.0", "").replace("J=", "l=-2.0 a=-1.0 J=")
    lat = parse_slf(text, "htk.slf")
    assert lat.words == list(HTK_WRITTEN)
    assert [htk_unescape(w, "x") for w in HTK_WRITTEN.values()] == list(HTK_WRITTEN)


def test_escapes_that_are_not_utf8_name_the_file():
    with pytest.raises(ValueError, match=r"latin1\.slf.*HTK escapes do not give UTF-8"):
        parse_slf(_slf(r"CAF\311"), "latin1.slf")  # Latin-1 É


def test_plain_words_and_pocketsphinx_ones_are_kept_as_they_are():
    words = ["'em", "o'clock", "<sil>", "(2)", "naïve"]
    assert parse_slf(_slf(*words), "ps.slf").words == words
    assert [htk_escape(w) for w in ["o'clock", "<sil>", "naïve"]] == ["o'clock", "<sil>", "naïve"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12))
def test_what_we_write_htk_reads_back_and_so_do_we(word):
    written = htk_escape(word)
    assert not any(c.isspace() for c in written)  # one field, never quoted
    assert htk_parse_string(written.encode("utf-8")) == word.encode("utf-8")
    assert htk_unescape(written, "x") == word


def test_a_lattice_of_awkward_words_round_trips_through_slf():
    words = ["'EM", '"QUOTED', "A\\B", "你好", "TAB\tIN", "END"]
    lat = parse_slf(_slf(*(htk_escape(w) for w in words)), "w.slf")
    batch, fails = build_batch([lat], rules=NormalizationRules.raw_words())
    assert not fails and words_on_arcs(batch) == words + ["-1"]
    text = format_slf(batch.fsas[0], batch.symbols, "w")
    assert r"W=\'EM " in text and r"W=A\\B " in text and "W=你好 " in text
    again, _ = build_batch([parse_slf(text, "w2.slf")], rules=NormalizationRules.raw_words())
    assert words_on_arcs(again) == words + ["-1"]
