"""Fixed facts of the method and of the landmark model (not tunables)."""

# OpenFace's 17 AU intensities, in OpenFace's column order.
AU_NAMES = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
            "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]
LOWER_FACE_AUS = ["AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26"]
# the AUs of the mouth's opening (lips part, jaw drop): what speech predicts best across speakers
JAW_AUS = ["AU25", "AU26"]
UPPER_FACE_AUS = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU45"]
LOWER_AU_IDX = [AU_NAMES.index(a) for a in LOWER_FACE_AUS]
UPPER_AU_IDX = [AU_NAMES.index(a) for a in UPPER_FACE_AUS]
JAW_AU_IDX = [AU_NAMES.index(a) for a in JAW_AUS]
# the upper-face AUs that move the eyes and brows only: AU06 (cheek raiser) and AU09 (nose wrinkler) move
# with the jaw, so as an input of the face branch they would carry the mouth's motion
EYE_BROW_AUS = ["AU01", "AU02", "AU04", "AU05", "AU07", "AU45"]
UPPER_AU_SOURCES = ("frames", "predicted", "constant")  # where the eye/brow AUs of a rendered frame come from
AU_MAX = 5.0  # OpenFace intensities live in [0, 5]

# mediapipe face mesh (478 points with iris refinement). Subject's right = image left.
NUM_LANDMARKS = 478
LIPS_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
              375, 321, 405, 314, 17, 84, 181, 91, 146]
LIPS_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,
              324, 318, 402, 317, 14, 87, 178, 88, 95]
MOUTH_LANDMARKS = LIPS_OUTER + LIPS_INNER  # 40 lip points, used by LMD
JAW_LANDMARKS = [152, 148, 176, 149, 150, 136, 172, 377, 400, 378, 379, 365, 397]  # chin and jaw line
LOWER_FACE_LANDMARKS = MOUTH_LANDMARKS + JAW_LANDMARKS  # what speech moves
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109]
# named points used by geometry (AUs, pose)
LM = dict(
    r_eye_outer=33, r_eye_inner=133, l_eye_outer=263, l_eye_inner=362,
    r_lid_up=159, r_lid_low=145, l_lid_up=386, l_lid_low=374,
    r_brow_inner=107, r_brow_outer=70, l_brow_inner=336, l_brow_outer=300,
    r_cheek=50, l_cheek=280, r_alar=98, l_alar=327,
    nose_tip=1, subnasale=2, mouth_r=61, mouth_l=291,
    lip_up_outer=0, lip_up_inner=13, lip_low_inner=14, lip_low_outer=17, chin=152,
)

# mediapipe points that expressions barely move, for the rigid head-pose fit: the forehead and the
# upper face outline (temples, at and above eye level), the nose bridge and ridge above the tip, and
# the eye corners. Not the brows (AU01/02/04), eyelids (AU05/07/45), iris (gaze), nostrils (AU09),
# nose tip / lips / cheeks / jaw (speech, AU06/10/12/26).
RIGID_LANDMARKS = [10, 338, 297, 332, 284, 251, 389, 356, 127, 162, 21, 54, 103, 67, 109, 151,  # forehead, temples
                   168, 6, 197, 195, 5,  # nose bridge and ridge
                   33, 133, 263, 362]  # eye corners

VIDEO_FPS = 25  # the field's frame rate; everything is resampled to it
SAMPLE_RATE = 16000  # audio rate of every feature extractor

# where the AUs of HMMM's explicit feature come from (SFP pairs each training step with one)
MEASURED, PREDICTED = "measured", "predicted"  # measured on the frame / predicted from audio by CMMM

FORMANT_DIM = 4  # formant rows per 10 ms: z-scored log F1, F2, F3 and a voicing flag (preprocess/formants.py)
