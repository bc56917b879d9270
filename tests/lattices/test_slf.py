import math

import pytest
import torch

from lattices.fsa_build import build_batch
from lattices.normalize import NormalizationRules
from lattices.slf import looks_like_slf, parse_slf
from models.files import read_text

from tests.lattices.test_reader_writer import DATA, THEANO, words_on_arcs

AMI = DATA / "ami-ihm" / "AMI_ES2011a_H00_FEE041_0003427_0003714.lat.gz"
PS = DATA / "pocketsphinx" / "3005-163389-0007.slf.gz"


def _batch(text, rules=None, name="x.slf"):
    return build_batch([parse_slf(text, name)], rules=rules)


def test_theanolm_words_on_links_and_header():
    lat = parse_slf(read_text(str(THEANO / "lattice.slf")), "lattice.slf")
    assert lat.num_nodes == 24 and len(lat.src) == 39 and lat.start == 0 and list(lat.finals) == [23]
    assert lat.header["lmscale"] == 12.3 and lat.header["wdpenalty"] == 0.7
    assert lat.header["utterance"] == "utterance 123"
    assert lat.words[4] == "to" and lat.am[4] == -2434.05 and lat.lm[4] == -87.29
    assert lat.start_times[4] == 0.25 and lat.end_times[4] == 0.62


def test_ami_words_on_nodes_move_to_entering_links():
    text = read_text(str(AMI))
    assert looks_like_slf(text)
    lat = parse_slf(text, str(AMI))
    assert lat.utt_id == "AMI_ES2011a_H00_FEE041_0003427_0003714"
    i = next(j for j in range(len(lat.src)) if lat.src[j] == 1 and lat.dst[j] == 2)
    assert lat.words[i] == "HEAR" and lat.am[i] == 21.73 and lat.lm[i] == -11.049  # n=, i= ignored
    batch, fails = build_batch([lat])
    assert not fails
    assert "<s>" not in batch.symbols and "</s>" not in batch.symbols
    raw, _ = build_batch([lat], rules=NormalizationRules.raw_words())
    assert "<s>" in raw.symbols and "</s>" in raw.symbols and "!NULL" not in raw.symbols


def test_pocketsphinx_reverse_numbered_lattice_is_top_sorted():
    text = read_text(str(PS))
    lat = parse_slf(text, str(PS))
    assert lat.header["start"] != "0" and lat.header["end"] == "0"
    batch, fails = build_batch([lat])
    assert not fails
    props = batch.fsas.properties_str
    assert "TopSorted" in props and "Valid" in props
    assert torch.all(batch.fsas.lm_scores == 0)
    assert hasattr(batch.fsas, "start_times")
    assert torch.all(batch.fsas.end_times >= batch.fsas.start_times)
    n = batch.fsas.shape
    assert int((batch.fsas.labels == -1).sum()) == 1  # one end node
    # k2 agrees it is connected: connect() keeps every arc
    assert k2_connected_arcs(batch.fsas) == batch.fsas.num_arcs and n[0] == 1


def k2_connected_arcs(fsas):
    import k2

    return k2.connect(fsas).num_arcs


def test_long_names_quotes_unknown_fields_base_and_r():
    text = """VERSION=1.0
UTTERANCE="two words" base=10.0 lmscale=5 foo=bar
NODES=3 LINKS=2
NODE=0 time=0.0
NODE=1 time=0.5 WORD=b
I=2 t=1.0 W=c
LINK=0 START=0 END=1 acoustic=-1 language=-2 r=-0.5 p=0.3 x=1
J=1 S=1 E=2 a=-3 n=-7
"""
    lat = parse_slf(text, "dir/u1.slf.gz")
    assert lat.utt_id == "u1" and lat.header["foo"] == "bar" and lat.header["lmscale"] == 5.0
    assert lat.words == ["b", "c"]
    assert lat.am.tolist() == pytest.approx([-1.5 * math.log(10), -3 * math.log(10)])
    assert lat.lm.tolist() == pytest.approx([-2 * math.log(10), 0.0])
    assert lat.start == 0 and list(lat.finals) == [2]


def test_base_zero_means_probabilities():
    text = "VERSION=1.0\nbase=0\nN=2 L=1\nJ=0 S=0 E=1 W=a a=0.5 l=0.25\n"
    lat = parse_slf(text, "p.slf")
    assert lat.am[0] == pytest.approx(math.log(0.5)) and lat.lm[0] == pytest.approx(math.log(0.25))
    with pytest.raises(ValueError, match="p.slf"):
        parse_slf(text.replace("a=0.5", "a=0"), "p.slf")


def test_word_on_start_node_gets_an_arc():
    text = "VERSION=1.0\nN=2 L=1\nI=0 W=hello\nI=1 W=world\nJ=0 S=0 E=1 a=-1\n"
    batch, fails = _batch(text)
    assert not fails
    assert words_on_arcs(batch) == ["hello", "world", "-1"]
    assert batch.fsas.am_scores.tolist() == [0.0, -1.0, 0.0]


@pytest.mark.parametrize("text,msg", [
    ("VERSION=1.0\nN=2 L=1\nJ=0 S=0 W=a\n", "without S= or E="),
    ("VERSION=1.0\nN=2 L=2\nJ=0 S=0 E=1 W=a\n", "L=2 links, found 1"),
    ("VERSION=1.0\nN=2 L=1\nJ=0 S=0 E=1 W=a a=x\n", "non-numeric"),
    ("VERSION=1.0\nN=2 L=1\nJ=0 S=0 E=5 W=a\n", "outside"),
    ("VERSION=1.0\n", "no N="),
    ("VERSION=1.0\nN=0 L=0\n", "empty"),
])
def test_malformed_slf_names_file(text, msg):
    with pytest.raises(ValueError, match=msg) as e:
        parse_slf(text, "/some/bad.slf")
    assert "/some/bad.slf" in str(e.value)


def test_cycle_is_an_error_naming_file_and_utterance():
    text = "VERSION=1.0\nstart=0 end=2\nN=3 L=3\nJ=0 S=0 E=1 W=a\nJ=1 S=1 E=2 W=b\nJ=2 S=2 E=1 W=c\n"
    batch, fails = _batch(text, name="/x/cyc.slf")
    assert len(batch) == 0 and len(fails) == 1
    assert fails[0].source == "/x/cyc.slf:cyc" and "cycle" in fails[0].message
