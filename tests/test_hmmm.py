"""HMMM: gated fusion of implicit and explicit features, gradients to both branches and to CMMM, and the
SFP objective sequence of a real fit (resumed runs continue it)."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import SMALL
from hm_talker.training.sfp import MEASURED, PREDICTED


def _module(identity, *overrides):
    from hm_talker.config.fit import load_config
    from hm_talker.training.hmmm_module import HMMMModule

    cfg = load_config(None, [f"data.root={identity}", *SMALL, *overrides])
    cfg.model.audio.rows_per_frame, cfg.model.audio.feature_dim = 4, 80
    with np.load(identity / "features.npz") as f:
        shape = f["mean_shape"]
    return HMMMModule(OmegaConf.to_object(cfg), shape)


def _batch(identity):
    from datamodules import TalkingHeadDataModule

    dm = TalkingHeadDataModule(str(identity), num_workers=0, val_batch_size=2)
    dm.setup()
    return next(iter(dm.val_dataloader()))


def _loss(module, batch, source):
    from hm_talker.training.losses import render_losses

    deformed = module.deform(batch, source=source)
    out = module.render(batch, deformed)
    return render_losses(module.cfg.loss, batch, out, deformed, 0, 0)["l1"], deformed


def _has_grad(net):
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("gate_on", ["gaussian", "token"])
def test_gates_lie_in_unit_interval_and_both_branches_and_cmmm_learn(identity64, gate_on):
    torch.manual_seed(0)
    module = _module(identity64, f"hmmm.gate_on={gate_on}", "cmmm.freeze=false", "cmmm.net.au_input=both")
    batch = _batch(identity64)
    # move the zero-initialised heads off zero so gradients reach the fusion and CMMM
    for head in module.head.face_deform.heads() + module.head.mouth_deform.heads():
        torch.nn.init.normal_(head.weight, std=0.05)
    loss, deformed = _loss(module, batch, PREDICTED)
    for branch in ("face_out", "mouth_out"):
        gates = deformed[branch].fusion_gates
        for key in ("region", "implicit", "explicit"):
            g = gates[key]
            assert g.min() >= 0 and g.max() <= 1 and 0 < g.mean() < 1, (branch, key)
    loss.backward()
    assert _has_grad(module.head.face_deform.fusion) and _has_grad(module.head.mouth_deform.fusion)
    assert _has_grad(module.cmmm.au_head) and _has_grad(module.cmmm.speech_head), \
        "the rendering loss reaches CMMM through the predicted AUs"
    assert _has_grad(module.cmmm.audio), "and through the implicit feature"

    module.zero_grad()
    loss, _ = _loss(module, batch, MEASURED)
    loss.backward()
    assert _has_grad(module.cmmm.au_encoder) and not _has_grad(module.cmmm.speech_head), \
        "measured AUs: the explicit feature bypasses CMMM's prediction"


def test_frozen_cmmm_gets_no_gradient_and_implicit_mode_has_no_explicit_path(identity64):
    module = _module(identity64, "cmmm.freeze=true")
    trainable = {n.split(".")[0] for n, p in module.cmmm.named_parameters() if p.requires_grad}
    assert trainable == {"au_encoder"}, "frozen: only the explicit-feature encoder (HMMM's input) learns"
    group = next(g for g in module._param_groups() if g["name"] == "cmmm")
    assert {id(p) for p in group["params"]} == {id(p) for p in module.cmmm.au_encoder.parameters()}
    implicit = _module(identity64, "hmmm.mode=implicit")
    assert implicit.head.face_deform.fusion is None
    assert implicit.conditions(_batch(identity64))["explicit"] is None


def test_predicted_lip_motion_scales_the_landmark_target_on_predicted_steps_only(identity64):
    module = _module(identity64, "loss.lip_motion=100", "sfp.predicted_lip_motion=0.25")
    assert module.lip_motion_weight(MEASURED) == 100.0
    assert module.lip_motion_weight(PREDICTED) == 25.0


def test_the_explicit_feature_moves_the_lips(identity64):
    """Other AUs, same audio: the deformation changes (the explicit path is wired to the Gaussians)."""
    torch.manual_seed(0)
    module = _module(identity64).eval()
    for head in module.head.face_deform.heads():
        torch.nn.init.normal_(head.weight, std=0.05)
    batch = _batch(identity64)
    a = module.deform(batch, source=MEASURED)["face"][0]
    batch["aus"] = batch["aus"] + 2.0
    b = module.deform(batch, source=MEASURED)["face"][0]
    assert (a - b).abs().max() > 1e-4


def test_the_jaw_subset_reads_the_mouths_opening_and_nothing_else():
    """hmmm.explicit_aus=jaw: the explicit feature follows AU25 / AU26 (lips part, jaw drop) and ignores the
    other 15 AUs (whose audio predictions another speaker's voice barely carries)."""
    from hm_talker.constants import AU_NAMES
    from hm_talker.model.cmmm import CMMM
    from hm_talker.model.config import AudioEncoderConfig, CMMMNetConfig

    torch.manual_seed(0)
    net = CMMM(AudioEncoderConfig(), CMMMNetConfig(), "jaw")
    aus = torch.full((1, len(AU_NAMES)), 1.0)
    base = net.explicit(aus)
    for name in AU_NAMES:
        moved = aus.clone()
        moved[0, AU_NAMES.index(name)] = 4.0
        change = (net.explicit(moved) - base).abs().max().item()
        assert (change > 1e-4) == (name in ("AU25", "AU26")), (name, change)
    with pytest.raises(ValueError, match="all, lower or jaw"):
        CMMM(AudioEncoderConfig(), CMMMNetConfig(), "mouth")


def test_the_scored_frames_aus_cannot_move_the_lips_or_jaw(identity64):
    """Audio-driven (the path of infer, evaluate and validation), the frame's own AUs reach the model only as
    the eye/brow condition: changing every AU of the frame moves face Gaussians above the nose and nothing
    below it (lips, jaw, cheeks) nor any Gaussian of the mouth branch."""
    torch.manual_seed(0)
    module = _module(identity64).eval()
    deform = module.head.face_deform
    for head in deform.heads():
        torch.nn.init.normal_(head.weight, std=0.05)
    for p in deform.parameters():  # gates and AU weights away from their initial zeros
        p.data.add_(0.05 * torch.randn_like(p))
    batch = _batch(identity64)
    with torch.no_grad():
        a = module.deform(batch, source=PREDICTED)
        batch["aus"] = batch["aus"] + 2.0
        b = module.deform(batch, source=PREDICTED)
    from hm_talker.constants import LM

    with np.load(identity64 / "features.npz") as f:
        shape = f["mean_shape"]
    y = module.head.face.means[:, 1].detach()  # head frame, y down
    below = y > float(shape[LM["lip_up_outer"], 1])  # lips and jaw: by geometry, not by the gate
    above = y < float(shape[LM["r_eye_outer"], 1] + shape[LM["l_eye_outer"], 1]) / 2  # eyes, brows, forehead
    moved = (a["face"][0] - b["face"][0]).abs().amax(dim=(0, 2))  # [N] per face Gaussian
    assert below.sum() > 50 and above.sum() > 20  # of the small model's 300 face Gaussians
    assert moved[above].max() > 1e-4  # the eye/brow condition does act above the nose
    assert moved[below].max() < 1e-2 * moved[above].max(), (float(moved[below].max()), float(moved[above].max()))
    assert torch.equal(a["mouth"][0], b["mouth"][0])


class _Sources:
    def __init__(self):
        import lightning as L

        class CB(L.Callback):
            def __init__(cb):
                cb.seen = {}

            def on_train_batch_end(cb, trainer, pl_module, outputs, batch, batch_idx):
                cb.seen[trainer.global_step - 1] = pl_module.last_source

        self.cb = CB()


def test_fit_follows_the_sfp_sequence_and_resume_continues_it(identity64, tmp_path):
    from hm_talker.training.fit import fit
    from hm_talker.training.sfp import SFPConfig, SFPSchedule

    args = [f"data.root={identity64}", f"run.dir={tmp_path}", "sfp.enabled=true", "sfp.schedule=random", "sfp.p_measured=0.5",
            "cmmm.pretrain_steps=5", "trainer.val_every=1000", *SMALL]
    full, first, second = _Sources(), _Sources(), _Sources()
    fit(None, [*args, "run.name=full", "trainer.max_steps=8"], False, callbacks=[full.cb])
    fit(None, [*args, "run.name=split", "trainer.max_steps=4"], False, callbacks=[first.cb])
    fit(None, [*args, "run.name=split", "trainer.max_steps=8"], True, callbacks=[second.cb])
    expected = {t: SFPSchedule(SFPConfig(schedule="random", p_measured=0.5, seed=0)).source(t) for t in range(8)}
    assert full.cb.seen == expected
    assert {**first.cb.seen, **second.cb.seen} == expected and sorted(second.cb.seen) == [4, 5, 6, 7]
    assert set(expected.values()) == {MEASURED, PREDICTED}


def test_a_predicted_share_scales_the_predictions_error_on_predicted_steps(identity64):
    """sfp.predicted_share=s: a predicted step's explicit feature reads measured + s x (predicted - measured);
    measured steps and driving (no share in the batch) are unchanged."""
    module = _module(identity64, "sfp.enabled=true", "sfp.predicted_share=0.25")
    batch = _batch(identity64)
    with torch.no_grad():
        pred = module.conditions(batch, PREDICTED)
        meas = module.conditions(batch, MEASURED)
        mixed = module.conditions({**batch, "predicted_share": 0.25}, PREDICTED)
        want = module.cmmm.explicit(batch["aus"] + 0.25 * (pred["pred_aus"] - batch["aus"]))
    torch.testing.assert_close(mixed["explicit"], want)
    assert not torch.allclose(mixed["explicit"], pred["explicit"]) and not torch.allclose(mixed["explicit"], meas["explicit"])


def test_a_max_error_pairs_only_the_frames_the_prediction_gets_close(identity64):
    """sfp.predicted_max_error=e: on a predicted step a frame reads its predicted AUs only where its predicted
    mouth opening (AU25, AU26) misses the measured one by at most e (RMS z); a frame further off keeps its
    measured AUs. The truth is built: one frame's measured AUs are its prediction, another's are 3 spreads away
    from it on every AU (RMS z 3)."""
    module = _module(identity64, "sfp.enabled=true", "sfp.predicted_max_error=1.0")
    batch = _batch(identity64)
    with torch.no_grad():
        pred = module.conditions(batch, PREDICTED)["pred_aus"]
        spread = module.cmmm.meas_std.clamp_min(1e-3)
        measured = pred.clone()
        measured[1] = pred[1] + 3 * spread  # 3 spreads away on every AU: RMS z 3
        b = {**batch, "aus": measured, "predicted_max_error": 1.0}
        gated = module.conditions(b, PREDICTED)
        loose = module.conditions({**b, "predicted_max_error": 10.0}, PREDICTED)
        ungated = module.conditions({**batch, "aus": measured}, PREDICTED)
    torch.testing.assert_close(gated["explicit"][0], module.cmmm.explicit(pred)[0])
    torch.testing.assert_close(gated["explicit"][1], module.cmmm.explicit(measured)[1])
    assert not torch.allclose(gated["explicit"][1], ungated["explicit"][1]), "the far frame is not paired"
    assert float(gated["predicted_kept"]) == 0.5 and float(loose["predicted_kept"]) == 1.0
    torch.testing.assert_close(loose["explicit"], ungated["explicit"])  # a wide enough gate pairs every frame
    assert ungated["predicted_kept"] is None  # driving (no gate in the batch) is unchanged


@pytest.mark.parametrize("gate_on", ["gaussian", "token"])
def test_a_held_explicit_path_takes_no_gradient_on_predicted_steps(identity64, gate_on):
    """sfp.predicted_explicit_grad=false: a predicted step (batch["hold_explicit"]) sends no gradient into the AU
    encoder or the explicit half of the fusion gates, while the implicit gates and the field still learn; the
    rendered frame is the one of the unheld step, and the next step listens to the AUs again."""
    torch.manual_seed(0)
    module = _module(identity64, f"hmmm.gate_on={gate_on}", "sfp.predicted_explicit_grad=false")
    for head in module.head.face_deform.heads() + module.head.mouth_deform.heads():
        torch.nn.init.normal_(head.weight, std=0.05)
    batch = _batch(identity64)
    fusion = module.head.face_deform.fusion
    last = fusion.gates[-1]  # its output rows: C implicit gates, then C explicit ones

    def grads(held: bool):
        module.zero_grad()
        loss, deformed = _loss(module, {**batch, "hold_explicit": True} if held else batch, PREDICTED)
        loss.backward()
        fields = _has_grad(module.head.face_deform) and _has_grad(module.head.mouth_deform)
        return loss.detach(), fields, last.weight.grad.clone(), _has_grad(module.cmmm.au_encoder)

    loss_h, fields_h, w_h, enc_h = grads(True)
    loss_u, _, w_u, enc_u = grads(False)
    c = fusion.dim
    assert not enc_h and enc_u, "the AU encoder learns on unheld steps only"
    assert w_h[c:].abs().sum() == 0 and w_u[c:].abs().sum() > 0, "explicit gates: no gradient when held"
    assert w_h[:c].abs().sum() > 0, "the implicit gates still learn"
    assert fields_h, "the deformation fields still learn on held steps"
    torch.testing.assert_close(loss_h, loss_u)  # holding changes what learns, not what is drawn
    assert not fusion.hold_explicit, "the hold ends with its step"


def test_the_logged_sfp_shares_cover_every_step_since_the_last_log(identity64, tmp_path):
    """train/objective_measured is the share of measured steps since the last logged step (logged every 4th step
    of a period-2 cycle it would otherwise read 1.0 every time), and train/predicted_kept the share of predicted
    steps' frames paired with their prediction (a gate of 100 spreads pairs them all, one of 1e-6 almost none)."""
    import lightning as L

    from hm_talker.training.fit import fit

    class Logged(L.Callback):
        def __init__(self):
            self.seen = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = trainer.global_step - 1
            if step % 4 == 0:
                m = trainer.logged_metrics
                self.seen[step] = (float(m["train/objective_measured"]), float(m.get("train/predicted_kept", -1)))

    args = [f"data.root={identity64}", f"run.dir={tmp_path}", "sfp.enabled=true", "trainer.log_every=4",
            "trainer.val_every=1000", "trainer.max_steps=9", *SMALL]
    wide, tight = Logged(), Logged()
    fit(None, [*args, "run.name=wide", "sfp.predicted_max_error=100"], False, callbacks=[wide])
    fit(None, [*args, "run.name=tight", "sfp.predicted_max_error=1e-6"], False, callbacks=[tight])
    # alternate, period 2: even steps measured; step 0 logs itself, steps 4 and 8 the four steps before them
    assert [wide.seen[s][0] for s in (0, 4, 8)] == [1.0, 0.5, 0.5]
    assert wide.seen[0][1] == -1 and wide.seen[4][1] == 1.0 and wide.seen[8][1] == 1.0
    assert tight.seen[4][1] == 0.0 and tight.seen[8][1] == 0.0
