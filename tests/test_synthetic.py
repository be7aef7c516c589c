"""Tests of the synthetic talking-head generator.

They check the properties the demo and other tests rely on: a decodable mp4
with the right length and a sound track, a face mediapipe actually tracks,
a drawn mouth that the tracker sees opening with the known ``mouth_open``,
a mouth that follows the sound's loudness, and determinism per seed.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from hm_talker.synthetic import (
    make_synthetic_clip,
    make_synthetic_speech,
    mouth_envelope,
    render_frames,
    synthesize_speech,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg on PATH")

FPS, SR = 25, 16000


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_synthetic_clip(tmp_path_factory.mktemp("synth") / "talk.mp4", seconds=4.0, fps=FPS, size=256, seed=0)


@pytest.fixture(scope="module")
def frames(clip):
    decord = pytest.importorskip("decord")
    vr = decord.VideoReader(str(clip.path), ctx=decord.cpu(0))
    return vr, vr.get_batch(list(range(len(vr)))).asnumpy()


def _decode_audio(path, sample_rate: int) -> np.ndarray:
    """Decode the file's sound track with ffmpeg (independent of our writer's code path)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def _per_frame_rms(audio: np.ndarray, spf: int, n: int) -> np.ndarray:
    a = np.zeros(spf * n, np.float64)
    m = min(len(a), len(audio))
    a[:m] = audio[:m]
    return np.sqrt((a.reshape(n, spf) ** 2).mean(1))


def test_clip_metadata_and_arrays(clip):
    assert clip.num_frames == 100 and clip.fps == FPS and clip.sample_rate == SR
    assert clip.mouth_open.shape == (100,) and clip.mouth_open.min() >= 0 and clip.mouth_open.max() <= 1
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (4 * SR,)
    assert clip.mouth_open.max() > 0.9 and (clip.mouth_open < 0.05).any()  # talks and pauses


def test_video_decodes_with_right_length(clip, frames):
    vr, imgs = frames
    assert len(vr) == clip.num_frames
    assert abs(vr.get_avg_fps() - FPS) < 1e-3
    assert imgs.shape == (clip.num_frames, 256, 256, 3)
    if shutil.which("ffprobe"):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,pix_fmt", "-of", "csv=p=0", str(clip.path)],
            check=True, capture_output=True, text=True,
        ).stdout
        assert "h264,yuv420p" in out and "aac" in out


def test_sound_track_duration_and_content(clip):
    audio = _decode_audio(clip.path, SR)
    spf = SR // FPS
    assert abs(len(audio) - clip.num_frames * spf) <= spf  # within one frame
    # The muxed track is our sound (AAC-coded): same loudness contour.
    r = np.corrcoef(_per_frame_rms(audio, spf, clip.num_frames), _per_frame_rms(clip.audio, spf, clip.num_frames))[0, 1]
    assert r > 0.95


def test_mouth_follows_audio_loudness(clip):
    rms = _per_frame_rms(clip.audio, SR // FPS, clip.num_frames)
    assert np.corrcoef(rms, clip.mouth_open)[0, 1] >= 0.8


def test_mediapipe_tracks_face_and_mouth(clip, frames):
    mp = pytest.importorskip("mediapipe")
    _, imgs = frames
    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
    )
    lip, truth = [], []
    try:
        for i, img in enumerate(imgs):
            res = mesh.process(img)
            if not res.multi_face_landmarks:
                continue
            pts = np.array([(p.x, p.y) for p in res.multi_face_landmarks[0].landmark])
            assert len(pts) == 478
            eye = np.linalg.norm(pts[33] - pts[263])
            lip.append(np.linalg.norm(pts[13] - pts[14]) / eye)
            truth.append(clip.mouth_open[i])
    finally:
        mesh.close()
    assert len(lip) >= 0.95 * len(imgs), f"face found in {len(lip)}/{len(imgs)} frames"
    r = np.corrcoef(lip, truth)[0, 1]
    assert r >= 0.8, f"inner-lip distance vs mouth_open r={r:.3f}"


def test_same_seed_same_clip_different_seed_differs(tmp_path):
    a = make_synthetic_clip(tmp_path / "a.mp4", seconds=1.0, seed=3)
    b = make_synthetic_clip(tmp_path / "b.mp4", seconds=1.0, seed=3)
    c = make_synthetic_clip(tmp_path / "c.mp4", seconds=1.0, seed=4)
    np.testing.assert_array_equal(a.mouth_open, b.mouth_open)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, c.audio)
    assert not np.array_equal(a.mouth_open, c.mouth_open)
    m = np.linspace(0, 1, 3)
    for fa, fb in zip(render_frames(m, seed=3), render_frames(m, seed=3)):
        np.testing.assert_array_equal(fa, fb)
    assert not np.array_equal(next(render_frames(m, seed=3)), next(render_frames(m, seed=4)))


def test_size_512_and_validation(tmp_path):
    clip = make_synthetic_clip(tmp_path / "big.mp4", seconds=1.0, size=512, seed=1)
    decord = pytest.importorskip("decord")
    vr = decord.VideoReader(str(clip.path), ctx=decord.cpu(0))
    assert len(vr) == 25 and vr[0].shape == (512, 512, 3)
    with pytest.raises(ValueError):
        make_synthetic_clip(tmp_path / "odd.mp4", seconds=1.0, size=255)


def test_speech_wav_is_speech_like(tmp_path):
    sf = pytest.importorskip("soundfile")
    librosa = pytest.importorskip("librosa")
    audio = make_synthetic_speech(tmp_path / "speech.wav", seconds=6.0, sample_rate=SR, seed=2)
    data, sr = sf.read(str(tmp_path / "speech.wav"), dtype="float32")
    assert sr == SR and len(data) == 6 * SR and np.abs(data - audio).max() < 1e-3
    np.testing.assert_array_equal(audio, synthesize_speech(6.0, SR, 2))
    # Pitch of voiced frames in the ~100-200 Hz speaking range.
    f0 = librosa.yin(audio, fmin=60, fmax=400, sr=SR, frame_length=1024)
    env = mouth_envelope(audio, SR, 100, len(f0))
    voiced = f0[env[: len(f0)] > 0.5]
    assert 95 <= np.median(voiced) <= 210
    # Syllables: loudness peaks per second of speaking time in the 4-6/s range,
    # and real pauses (speaking time well below the whole duration).
    e = mouth_envelope(audio, SR, FPS, 6 * FPS)
    peaks = np.sum((e[1:-1] > e[:-2]) & (e[1:-1] >= e[2:]) & (e[1:-1] > 0.2))
    speaking_s = (e > 0.05).sum() / FPS
    assert 4.0 <= peaks / speaking_s <= 6.0
    assert speaking_s < 0.9 * 6.0
