"""The composite: the Gaussians draw inside the rendered region only, the real frame is shown outside it.

The losses score the region alone (render_losses), so Gaussians that spill over its edge are untrained there:
drawn, they made a bright line along the neck wherever the audio moved the jaw further than training did."""
import torch

from test_hmmm import _batch, _module


def test_gaussians_spilling_over_the_region_edge_leave_the_real_frame_outside_it(identity64):
    torch.manual_seed(0)
    module = _module(identity64).eval()
    batch = _batch(identity64)
    with torch.no_grad():
        deformed = module.deform(batch)
        means = deformed["face"][0]
        centre = means.mean(dim=1, keepdim=True)
        spread = list(deformed["face"])
        spread[0] = centre + 1.6 * (means - centre)  # the face 60 % wider: well over the region's edge
        deformed["face"] = tuple(spread)
        module.head.face.sh0.fill_(3.0)  # bright Gaussians: a spill would show
        out = module.render(batch, deformed)
        region = out["face_mask"] > 0.5  # [B, 1, H, W]
        views = batch["extrinsics"].float(), batch["intrinsics"].float()
        _, face_a, _ = module.head._render_branch("face", *deformed["face"], *views, *batch["image"].shape[-2:])
    outside = ~region.expand_as(out["rgb"])
    assert (face_a[~region] > 0.5).sum() > 100  # the Gaussians do cover pixels outside the region
    assert region.any() and outside.any()
    assert torch.equal(out["rgb"][outside], batch["image"][outside])  # exactly the real frame there
    assert (out["rgb"] - batch["image"]).abs()[~outside].mean() > 0.05  # and the head inside it
