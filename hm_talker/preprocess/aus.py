"""The 17 OpenFace AU intensities estimated from landmark geometry, calibrated per identity.

Each AU is read off one geometric feature of the pose-free landmarks (the head frame of pose.py, in
units of the outer-eye-corner distance), oriented so that a larger value means more of the muscle
action. Per identity, the feature's neutral level is a percentile of its values over the clip
(`au_neutral_percentile`, default the 5th, for actions a talking face is mostly free of; the median
for the eyelids, which move both ways) and intensity = clip((value - neutral) / unit, 0, 5), so one
`unit` of displacement is intensity 1. `--openface-csv` imports OpenFace's appearance-based
regressors where the user has them.

What each AU is (no AU is a copy of another; AU05 / AU07 / AU45 used to be one eye-opening scalar):

- proxies, the landmarks carry the action's geometry: AU01 inner-brow height, AU02 outer-brow
  height, AU04 brow lowering (brows drawn together and down), AU05 upper-lid height above the
  eye-corner line, AU07 lower-lid height (rises when the lids tighten; also during blinks), AU45 eye
  closure (aperture relative to the identity's median aperture), AU10 upper-lip raise, AU12
  lip-corner pull (up and out), AU15 lip-corner depression, AU17 chin raise, AU20 mouth
  stretch (width), AU23 lip thinning, AU25 lip gap, AU26 jaw drop.
- not estimable from landmarks, weak proxies kept so that the 17-vector is complete: AU06 cheek
  raiser (its cue is the cheek bulge and crow's-feet wrinkles; landmarks see only the lower-lid to
  cheek distance), AU09 nose wrinkler (wrinkles; the nostril-wing raise is a small part), AU14
  dimpler (mouth-corner depth: the landmark model's z is inferred, not measured).
"""
from __future__ import annotations

import numpy as np

from hm_talker.constants import AU_MAX, AU_NAMES, LM
from hm_talker.errors import InputError

NEUTRAL = None  # percentile placeholder: PreprocessConfig.au_neutral_percentile
# AU -> (feature, neutral percentile, unit in eye-distance units; "rel" = fraction of neutral / 5)
AU_GEOMETRY = {
    "AU01": ("inner_brow_height", NEUTRAL, 0.015),
    "AU02": ("outer_brow_height", NEUTRAL, 0.015),
    "AU04": ("brow_lowering", NEUTRAL, 0.012),
    "AU05": ("upper_lid_raise", 50, 0.01),
    "AU06": ("cheek_raise", NEUTRAL, 0.012),
    "AU07": ("lower_lid_raise", 50, 0.01),
    "AU09": ("nose_raise", NEUTRAL, 0.01),
    "AU10": ("upper_lip_raise", NEUTRAL, 0.02),
    "AU12": ("corner_pull", NEUTRAL, 0.02),
    "AU14": ("corner_back", NEUTRAL, 0.015),
    "AU15": ("corner_down", NEUTRAL, 0.012),
    "AU17": ("chin_raise", NEUTRAL, 0.025),
    "AU20": ("mouth_width", NEUTRAL, 0.03),
    "AU23": ("lip_thinning", NEUTRAL, 0.012),
    "AU25": ("lip_gap", NEUTRAL, 0.04),
    "AU26": ("jaw_drop", NEUTRAL, 0.05),
    "AU45": ("eye_closure", 50, "rel"),
}


def geometry_features(canon: np.ndarray) -> dict[str, np.ndarray]:
    """Pose-free landmarks [T, 478, 3] (y down, z away from the camera) -> named features [T]."""
    p = {k: canon[:, i] for k, i in LM.items()}
    y = {k: v[:, 1] for k, v in p.items()}
    up = lambda a, b: y[b] - y[a]  # how far a is above b  # noqa: E731
    eye_open = 0.5 * (up("r_lid_up", "r_lid_low") + up("l_lid_up", "l_lid_low"))
    corner_y = {side: 0.5 * (y[f"{side}_eye_outer"] + y[f"{side}_eye_inner"]) for side in ("r", "l")}
    upper_lid = 0.5 * sum(corner_y[side] - y[f"{side}_lid_up"] for side in ("r", "l"))  # lid above corners
    lower_lid = 0.5 * sum(corner_y[side] - y[f"{side}_lid_low"] for side in ("r", "l"))  # < 0: below
    centre = 0.5 * (p["lip_up_inner"] + p["lip_low_inner"])
    corner_elev = centre[:, 1] - 0.5 * (y["mouth_r"] + y["mouth_l"])
    width = np.linalg.norm(p["mouth_r"] - p["mouth_l"], axis=1)
    inner_brow = 0.5 * (up("r_brow_inner", "r_eye_inner") + up("l_brow_inner", "l_eye_inner"))
    brow_gap = np.abs(p["l_brow_inner"][:, 0] - p["r_brow_inner"][:, 0])
    return {
        "inner_brow_height": inner_brow,
        "outer_brow_height": 0.5 * (up("r_brow_outer", "r_eye_outer") + up("l_brow_outer", "l_eye_outer")),
        "brow_lowering": -brow_gap - 0.5 * inner_brow,
        "eye_open": eye_open,
        "upper_lid_raise": upper_lid,
        "lower_lid_raise": lower_lid,
        "eye_closure": -eye_open,
        "cheek_raise": -0.5 * (up("r_lid_low", "r_cheek") + up("l_lid_low", "l_cheek")),
        "nose_raise": -0.5 * (up("r_eye_inner", "r_alar") + up("l_eye_inner", "l_alar")),
        "upper_lip_raise": -up("subnasale", "lip_up_outer"),
        "corner_pull": corner_elev + 0.5 * width,
        "corner_back": 0.5 * (p["mouth_r"][:, 2] + p["mouth_l"][:, 2]) - centre[:, 2],
        "corner_down": -corner_elev,
        "chin_raise": -up("lip_low_outer", "chin"),
        "mouth_width": width,
        "lip_thinning": -(up("lip_up_outer", "lip_up_inner") + up("lip_low_inner", "lip_low_outer")),
        "lip_gap": up("lip_up_inner", "lip_low_inner"),
        "jaw_drop": up("subnasale", "chin"),
    }


class AUCalibration:
    """Per-identity neutral levels; fit on the identity's clip, then apply to any of its frames."""

    def __init__(self, neutral: dict[str, float], units: dict[str, float]):
        self.neutral, self.units = neutral, units

    @classmethod
    def fit(cls, canon: np.ndarray, unit_overrides: dict | None = None,
            neutral_percentile: float = 5.0) -> "AUCalibration":
        """Neutral levels from the clip: `neutral_percentile` of each feature (the eyelids' median)."""
        return cls.fit_features(geometry_features(canon), unit_overrides, neutral_percentile)

    @classmethod
    def fit_features(cls, feats: dict[str, np.ndarray], unit_overrides: dict | None = None,
                     neutral_percentile: float = 5.0) -> "AUCalibration":
        """:meth:`fit` from the clip's :func:`geometry_features` (per-frame scalars, not landmarks)."""
        neutral, units = {}, {}
        for au, (feat, pct, unit) in AU_GEOMETRY.items():
            neutral[au] = float(np.percentile(feats[feat], neutral_percentile if pct is NEUTRAL else pct))
            if unit == "rel":  # full closure of the eye = intensity 5
                unit = abs(float(np.percentile(feats["eye_open"], 50))) / AU_MAX
            units[au] = float((unit_overrides or {}).get(au, unit))
        return cls(neutral, units)

    def apply(self, canon: np.ndarray) -> np.ndarray:
        """[T, 478, 3] pose-free landmarks -> [T, 17] AU intensities in [0, 5]."""
        return self.apply_features(geometry_features(canon))

    def apply_features(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """:meth:`apply` to already computed :func:`geometry_features` ([T] each) -> [T, 17]."""
        out = np.zeros((len(feats["lip_gap"]), len(AU_NAMES)), dtype=np.float32)
        for j, au in enumerate(AU_NAMES):
            feat = AU_GEOMETRY[au][0]
            out[:, j] = (feats[feat] - self.neutral[au]) / max(self.units[au], 1e-9)
        return np.clip(out, 0.0, AU_MAX)

    def to_dict(self) -> dict:
        return {"neutral": self.neutral, "units": self.units}

    @classmethod
    def from_dict(cls, d: dict) -> "AUCalibration":
        return cls(dict(d["neutral"]), dict(d["units"]))


def read_openface_csv(path, num_src: int, src_indices: np.ndarray) -> np.ndarray:
    """OpenFace's CSV (columns `AU01_r` or ` AU01_r`) -> [T_out, 17] at the output frame rate.

    The CSV must have one row per source frame (OpenFace's own output) or one per output frame.
    """
    import csv

    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(path, f"cannot read OpenFace CSV ({exc.strerror})") from None
    if not rows:
        raise InputError(path, "OpenFace CSV is empty")
    header = [h.strip() for h in rows[0]]
    missing = [a for a in AU_NAMES if f"{a}_r" not in header]
    if missing:
        raise InputError(path, f"OpenFace CSV lacks columns {', '.join(m + '_r' for m in missing)}")
    cols = [header.index(f"{a}_r") for a in AU_NAMES]
    try:
        data = np.array([[float(r[c]) for c in cols] for r in rows[1:] if r], dtype=np.float32)
    except (ValueError, IndexError):
        raise InputError(path, "OpenFace CSV has a non-numeric or short row") from None
    if len(data) == num_src:
        data = data[src_indices]
    elif len(data) != len(src_indices):
        raise InputError(path, f"OpenFace CSV has {len(data)} rows; expected {num_src} "
                               f"(source frames) or {len(src_indices)} (frames at 25 fps)")
    return np.clip(data, 0.0, AU_MAX)
