"""afp-tune: the grid point it writes has the fewest errors of all, checked by one afp-rescore run
per grid point; afp-rescore --scales reproduces it."""
import json
import os

from click.testing import CliRunner

from rescore.tune_cli import tune_command
from tests.rescore.test_cli import read_text, run

GRID = {"--lm-scales": "0.5,4", "--word-penalties": "-1,2", "--weights": "0.5,1"}


def run_tune(tmp, lats, scales, *args):
    """afp-tune on the fixture's lattices (must succeed); returns the scales.json it wrote."""
    r = CliRunner(mix_stderr=False).invoke(tune_command, ["--ref", str(tmp / "ref.txt"), "--out", scales, *args, lats])
    assert r.exit_code == 0, r.stderr
    return json.load(open(scales))


def test_tuned_scales_are_the_best_grid_point_and_scales_json_reproduces_them(setup, tmp_path):
    tmp, lats, lms = setup
    scales = str(tmp_path / "scales.json")
    tuned = run_tune(tmp, lats, scales, "--lm", lms["afp2"], "--old-lm", lms["arpa"], "--device", "cpu", "--rounds", "1",
                     *[x for kv in GRID.items() for x in kv])
    errors = {}
    for s in GRID["--lm-scales"].split(","):
        for p in GRID["--word-penalties"].split(","):
            for w in GRID["--weights"].split(","):
                out = str(tmp_path / f"r-{s}-{p}-{w}")
                res = run("--lm", lms["afp2"], "--old-lm", lms["arpa"], "--out", out, "--device", "cpu", "--am-scale", 1,
                          "--lm-scale", s, "--word-penalty", p, "--interpolate", w, "--ref", tmp / "ref.txt", lats)
                assert res.exit_code == 0, res.stderr
                errors[(float(s), float(p), float(w))] = json.load(open(os.path.join(out, "metrics.json")))["wer_errors"]
    assert tuned["errors"] == min(errors.values())
    assert errors[(tuned["lm_scale"], tuned["word_penalty"], tuned["interpolate"])] == tuned["errors"]
    assert {(a, b, c): e for a, b, c, e in tuned["grid"]} == errors
    out = str(tmp_path / "with-scales")
    assert run("--lm", lms["afp2"], "--old-lm", lms["arpa"], "--out", out, "--device", "cpu", "--scales", scales, lats).exit_code == 0
    best = str(tmp_path / f"r-{tuned['lm_scale']:g}-{tuned['word_penalty']:g}-{tuned['interpolate']:g}")
    assert read_text(os.path.join(out, "text")) == read_text(os.path.join(best, "text"))
    r = run("--lm", lms["afp2"], "--out", str(tmp_path / "x"), "--scales", scales, "--lm-scale", 3, lats)
    assert r.exit_code == 1 and "do not also give --lm-scale" in r.stderr


def test_second_round_prunes_at_the_first_rounds_scales(setup, tmp_path):
    """With --max-arcs forcing pruning: two rounds are recorded; when the second round confirms
    the first, afp-rescore --scales (which prunes at those scales) makes exactly the tuned errors."""
    tmp, lats, lms = setup
    scales = str(tmp_path / "scales.json")
    tuned = run_tune(tmp, lats, scales, "--lm", lms["afp2"], "--device", "cpu", "--max-arcs", "6",
                     "--lm-scales", "0.5,4", "--word-penalties", "-1,2", "--weights", "1")
    assert len(tuned["rounds"]) == 2
    (first, _), (second, errors) = tuned["rounds"]
    assert errors == tuned["errors"]
    if first == second:
        out = str(tmp_path / "apply")
        res = run("--lm", lms["afp2"], "--out", out, "--device", "cpu", "--max-arcs", 6, "--scales", scales,
                  "--ref", tmp / "ref.txt", lats)
        assert res.exit_code == 0, res.stderr
        assert json.load(open(os.path.join(out, "metrics.json")))["wer_errors"] == errors


def test_scales_json_records_the_penalties_and_afp_rescore_insists_on_them(setup, tmp_path):
    tmp, lats, lms = setup
    scales = str(tmp_path / "scales.json")
    tuned = run_tune(tmp, lats, scales, "--lm", lms["arpa"], "--rounds", "1", "--weights", "1", "--lm-scales", "1",
                     "--word-penalties", "0", "--silence-penalty", "-2")
    assert tuned["silence_penalty"] == -2.0
    r = run("--lm", lms["arpa"], "--out", str(tmp_path / "a"), "--scales", scales, lats)
    assert r.exit_code == 1 and "--silence-penalty" in r.stderr
    assert run("--lm", lms["arpa"], "--out", str(tmp_path / "b"), "--scales", scales, "--silence-penalty", -2, lats).exit_code == 0
