"""The rescoring tests' shared fixture: six random SLF lattices, references, an ARPA 3-gram and
two AFP checkpoints (used by test_cli.py and test_tune.py)."""
import random

import pytest
import torch

from models.checkpoint import save_checkpoint
from models.config import LMConfig
from models.lm import AFPLanguageModel
from models.vocab import Vocabulary

ARPA = """\\data\\
ngram 1=8
ngram 2=4
ngram 3=2

\\1-grams:
-0.9 <s> -0.4
-0.7 </s>
-2.0 <unk>
-0.6 w1 -0.3
-0.8 w2 -0.2
-1.0 w3 -0.5
-1.2 w4 -0.1
-1.5 w5

\\2-grams:
-0.2 <s> w1 -0.1
-0.3 w1 w2 -0.2
-0.5 w2 w3
-0.4 w3 </s>

\\3-grams:
-0.1 <s> w1 w2
-0.2 w1 w2 w3

\\end\\
"""

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Six random SLF lattices (words w1..w6), references, and two LMs (AFP-2 and K >= length)."""
    import k2  # here, not at the top: the k2-free tests of this directory run where k2 is missing

    from lattices.lattice_batch import LatticeBatch
    from lattices.writer import write_lattices
    from tests.lattice_utils import fsa_from_arcs, make_symbols, random_lattice_arcs

    tmp = tmp_path_factory.mktemp("rescore")
    rng = random.Random(5)
    fsas = [fsa_from_arcs(*random_lattice_arcs(rng, num_states=rng.randint(3, 6))) for _ in range(6)]
    symbols = make_symbols()
    batch = LatticeBatch(k2.create_fsa_vec(fsas), [f"utt{i}" for i in range(6)], symbols)
    lats = tmp / "lats"
    write_lattices(batch, str(lats), "slf")
    (tmp / "ref.txt").write_text("".join(f"utt{i} w1 w2 w3\n" for i in range(6)))
    vocab = Vocabulary([("<eps>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3)] + [(f"w{i}", 3 + i) for i in range(1, 6)])
    lms = {"arpa": str(tmp / "lm.arpa")}
    (tmp / "lm.arpa").write_text(ARPA)
    for name, k in (("afp2", 2), ("long", 50)):
        torch.manual_seed(k)
        model = AFPLanguageModel(LMConfig(vocab_size=vocab.size, embed=8, hidden=8, cell="gru", iterations=k))
        model.set_nonpredictable(vocab.nonpredictable_ids())
        lms[name] = str(tmp / f"{name}.pt")
        save_checkpoint(lms[name], model, vocab)
    return tmp, str(lats), lms
