"""compare_runs on fake run directories; load_wandb_runs record conversion and offline error."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from hm_talker import compare
from hm_talker.errors import InputError


def _run(root, name, group, seed, metrics):
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "name": name, "group": group, "seed": seed, "tags": ["test"],
        "config": {"model.lr": 1e-3, "seed": seed}, "metrics": metrics}))
    return d


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "runs"
    return [
        _run(root, "full_s0", "full", 0, {"psnr": 30.0, "lpips": 0.05, "sync_c": 7.0, "num_frames": 100}),
        _run(root, "full_s1", "full", 1, {"psnr": 32.0, "lpips": 0.07, "sync_c": None, "num_frames": 100}),
        _run(root, "no_au_s0", "no_au", 0, {"psnr": 28.0, "lpips": 0.09, "sync_c": 6.0, "num_frames": 100}),
    ]


def test_compare_means_stds_table_and_plots(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    table = compare.compare_runs(runs, out)
    assert table.groups == ["full", "no_au"]
    assert table.metrics == ["sync_c", "psnr", "lpips"]  # known order (full frame last); num_frames is no metric
    full, no_au = table.stats["full"], table.stats["no_au"]
    assert full["psnr"].mean == pytest.approx(31.0)
    assert full["psnr"].std == pytest.approx(math.sqrt(2.0))  # sample std of (30, 32)
    assert full["lpips"].mean == pytest.approx(0.06)
    assert full["lpips"].std == pytest.approx(np.std([0.05, 0.07], ddof=1))
    assert full["sync_c"].mean == 7.0 and full["sync_c"].n == 1 and full["sync_c"].std is None
    assert no_au["psnr"].mean == 28.0 and no_au["psnr"].std is None and no_au["psnr"].n == 1
    assert table.seeds == {"full": [0, 1], "no_au": [0]}
    assert table.best_group("psnr") == "full" and table.best_group("lpips") == "full"

    md = (out / "comparison.md").read_text()
    assert md == table.to_markdown()
    assert "| full | 2 | 0, 1 | **7.0000** (n=1) | **31.0000** ± 1.4142 | **0.0600** ± 0.0141 |" in md
    assert "| no_au | 1 | 0 | 6.0000 | 28.0000 | 0.0900 |" in md
    assert "psnr ↑" in md and "lpips ↓" in md
    assert "31.0000" in capsys.readouterr().out  # printed too
    assert json.loads((out / "comparison.json").read_text())["stats"]["full"]["psnr"]["n"] == 2

    from PIL import Image

    for metric in table.metrics:
        png = out / f"metric_{metric}.png"
        with Image.open(png) as img:
            img.load()
            assert img.format == "PNG"
            assert img.size[0] >= 300 and img.size[1] >= 200
    import matplotlib.image

    assert matplotlib.image.imread(out / "metric_psnr.png").ndim == 3


def test_compare_accepts_a_parent_folder(runs, tmp_path):
    table = compare.compare_runs([runs[0].parent], tmp_path / "cmp2", print_table=False)
    assert sum(len(r) for r in table.runs.values()) == 3


def test_compare_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        compare.compare_runs([tmp_path / "nope"], tmp_path / "o")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        compare.compare_runs([bad], tmp_path / "o")


def test_wandb_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(RuntimeError, match="needs the W&B server"):
        compare.load_wandb_runs("hm-talker")


def test_wandb_runs_become_records(tmp_path):
    class FakeApi:
        def __init__(self):
            self.calls = []

        def runs(self, path, filters=None):
            self.calls.append((path, filters))
            return [
                SimpleNamespace(id="a1", name="full_s0", group="full", tags=["x"],
                                config={"seed": 0, "model": {"lr": 1e-3}},
                                summary_metrics={"eval/psnr": 30.0, "eval/lpips": 0.05, "_step": 9,
                                                 "train/loss": 0.1}),
                SimpleNamespace(id="a2", name="full_s1", group="full", tags=[],
                                config={"seed": {"value": 1, "desc": None}},
                                summary_metrics={"eval/psnr": 32.0, "eval/lpips": None}),
            ]

    api = FakeApi()
    recs = compare.load_wandb_runs("hm-talker", group="full", entity="lab", metric_prefix="eval/", api=api)
    assert api.calls == [("lab/hm-talker", {"group": "full"})]
    assert [r.seed for r in recs] == [0, 1]
    assert recs[0].metrics == {"psnr": 30.0, "lpips": 0.05}
    assert recs[0].config["model.lr"] == 1e-3
    table = compare.compare_records(recs, tmp_path / "w", print_table=False)
    assert table.stats["full"]["psnr"].mean == 31.0 and table.stats["full"]["lpips"].n == 1


def _eval_run(root, name, group, protocol, seed, metrics):
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "name": name, "group": group, "protocol": protocol, "seed": seed, "tags": [f"eval-{protocol}"],
        "config": {}, "metrics": metrics}))
    return d


def test_self_and_cross_driven_results_are_never_averaged_together(tmp_path):
    root = tmp_path / "ev"
    dirs = [_eval_run(root, "a-self-0", "sfp", "self", 0, {"psnr_face": 30.0, "mouth_r": 0.6, "mouth_amp": 0.9, "psnr": 36.0}),
            _eval_run(root, "a-self-1", "sfp", "self", 1, {"psnr_face": 32.0, "mouth_r": 0.4, "mouth_amp": 1.3, "psnr": 38.0}),
            _eval_run(root, "a-cross-0", "sfp", "cross-video", 0, {"mouth_r": 0.1, "mouth_amp": 0.2}),
            _eval_run(root, "b-cross-0", "base", "cross-video", 0, {"mouth_r": 0.05, "mouth_amp": 0.95})]
    table = compare.compare_runs(dirs, tmp_path / "cmp", print_table=False)
    assert table.groups == ["sfp [self]", "sfp [cross-video]", "base [cross-video]"]
    assert table.stats["sfp [self]"]["mouth_r"].mean == pytest.approx(0.5)
    assert table.stats["sfp [cross-video]"]["mouth_r"].mean == pytest.approx(0.1)  # not (0.6+0.4+0.1)/3
    assert table.metrics[:3] == ["psnr_face", "mouth_r", "mouth_amp"] and table.metrics[-1] == "psnr"  # face first
    # best per protocol; mouth_amp is best closest to 1 (a frozen mouth is not "lower is better")
    assert table.best_group("mouth_r", "cross-video") == "sfp [cross-video]"
    assert table.best_group("mouth_amp", "cross-video") == "base [cross-video]"
    assert table.best_group("mouth_r") is None  # rows of different protocols are not ranked together
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert md.startswith("| group | protocol | runs | seeds | psnr_face ↑ | mouth_r ↑ | mouth_amp →1 |")
    assert "| sfp | cross-video | 1 | 0 | – | **0.1000** | 0.2000 |" in md
    assert "| base | cross-video | 1 | 0 | – | 0.0500 | **0.9500** |" in md


def test_protocol_comes_from_the_eval_tag_when_the_summary_has_none(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"name": "x", "group": "g", "tags": ["eval-self"], "metrics": {}}))
    assert compare.load_summary(d).protocol == "self"


def test_one_references_columns_are_not_repeated_and_two_references_keep_theirs():
    from hm_talker.compare.records import RunRecord
    from hm_talker.compare.table import aggregate

    def run(name, seed, r, per_ref):
        return RunRecord(name, "g", seed, metrics={"val/cross_mouth_r": r, "val/cross_mouth_r_deaf": -r / 4,
                                                  **per_ref})

    one = [run(f"a{s}", s, r, {"val/cross/REF/mouth_r": r, "val/cross/REF/mouth_r_deaf": -r / 4})
           for s, r in ((0, 0.3), (1, 0.4))]
    assert aggregate(one).metrics == ["val/cross_mouth_r", "val/cross_mouth_r_deaf"]
    two = [run(f"b{s}", s, (a + b) / 2, {"val/cross/A/mouth_r": a, "val/cross/B/mouth_r": b})
           for s, (a, b) in ((0, (0.2, 0.4)), (1, (0.3, 0.5)))]
    assert {"val/cross/A/mouth_r", "val/cross/B/mouth_r"} <= set(aggregate(two).metrics)


def test_interval_bounds_of_single_runs_are_not_averaged_into_a_table():
    """mouth_r's interval is one run's: a mean of lower bounds over seeds is no interval of the mean."""
    from hm_talker.compare.records import RunRecord
    from hm_talker.compare.table import aggregate, metric_direction

    bounds = {"val/mouth_r_lo": -0.1, "val/mouth_r_hi": 0.8, "val/cross/REF/mouth_r_lo": 0.3,
              "val/cross/REF/mouth_r_hi_deaf": 0.2, "mouth_r_lo": 0.1, "mouth_r_hi": 0.6,
              "val/cross/REF/mouth_r_gain_lo": 0.1, "val/cross/REF/mouth_r_gain_hi": 0.5}
    runs = [RunRecord(f"a{s}", "g", s, metrics={"val/mouth_r": 0.4 + s / 10, "mouth_r": 0.3, "psnr_val": 30.0,
                                                "val/cross_mouth_r_deaf": 0.1, "val/cross/REF/mouth_r_gain": 0.3,
                                                "zz_other": 1.0, **bounds}) for s in (0, 1)]
    table = aggregate(runs)
    # no bound anywhere; the gain beside the validation's lip-sync columns, before psnr_val and the rest
    assert table.metrics == ["val/mouth_r", "val/cross_mouth_r_deaf", "val/cross/REF/mouth_r_gain", "psnr_val",
                             "mouth_r", "zz_other"]
    assert metric_direction("val/cross/REF/mouth_r_gain") == 1  # a gain over the deaf control: higher is better
