"""Procedural face renderer that mediapipe's face detector and mesh can track.

Why procedural: tests and the demo need a talking-head video whose mouth
opening is known exactly, with no external footage. The drawing aims at the
cues a face detector relies on (skin-toned shaded oval, dark eyes with whites
and irises under brows, a shaded nose, darker lips around a dark mouth, hair
framing the forehead, a neck and shoulders) rather than at beauty.

Speed: everything that does not change per frame (background, torso, head
shading, hair, brows, nose) is drawn once. Per frame only two small eye
patches and the mouth patch are redrawn and the head layer is warped by a
small affine pose and composited over the background.
"""
from __future__ import annotations

import cv2
import numpy as np

_AA = cv2.LINE_AA
_SHIFT = 4  # sub-pixel precision bits for cv2 drawing calls
_ONE = 1 << _SHIFT

_SKINS = [(226, 178, 148), (214, 160, 124), (190, 136, 100), (160, 110, 80), (236, 196, 170)]
_HAIRS = [(40, 28, 22), (70, 45, 30), (20, 18, 18), (120, 80, 45), (95, 70, 50)]
_SHIRTS = [(50, 70, 120), (120, 40, 40), (60, 100, 70), (80, 80, 90), (30, 30, 40)]
_BACKS = [(150, 165, 180), (185, 180, 165), (120, 140, 150), (170, 160, 175)]


def _pts(xy: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 fixed-point points for cv2 with _SHIFT."""
    return np.round(np.asarray(xy) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _fill(img: np.ndarray, xy: np.ndarray, color) -> None:
    cv2.fillPoly(img, [_pts(xy)], color, _AA, _SHIFT)


def _line(img: np.ndarray, xy: np.ndarray, color, thickness: int) -> None:
    cv2.polylines(img, [_pts(xy)], False, color, max(1, thickness), _AA, _SHIFT)


def _ellipse(img, center, axes, color, angle=0.0, thickness=-1):
    c = tuple(int(round(v * _ONE)) for v in center)
    a = tuple(max(1, int(round(v * _ONE))) for v in axes)
    cv2.ellipse(img, c, a, angle, 0, 360, color, thickness, _AA, _SHIFT)


class FaceRenderer:
    """Draws frames of one synthetic person; appearance is fixed by ``rng``.

    Geometry is expressed in fractions of the frame size so 256 and 512 px
    frames look the same. Call :meth:`render` with the mouth opening in [0,1],
    the eyelid closure in [0,1] and a pose (dx, dy in pixels, rotation in
    degrees, scale factor).
    """

    def __init__(self, size: int, rng: np.random.Generator):
        self.s = s = int(size)
        pick = lambda pal: np.array(pal[int(rng.integers(len(pal)))], np.float32)
        self.skin = pick(_SKINS) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
        self.hair = pick(_HAIRS)
        self.shirt = pick(_SHIRTS)
        self.back = pick(_BACKS)
        self.lip = np.clip(self.skin * np.array([0.82, 0.50, 0.52]), 0, 255)
        self.iris = np.array([(70, 45, 25), (60, 90, 120), (80, 100, 60), (45, 30, 20)][int(rng.integers(4))], np.float32)
        self.cx, self.cy = 0.5 * s, 0.44 * s
        self.a, self.b = 0.19 * s, 0.25 * s  # head half-width / half-height
        self.eye_y = self.cy - 0.02 * s
        self.eye_dx, self.eye_w, self.eye_h = 0.078 * s, 0.034 * s, 0.02 * s
        self.mouth_y = self.cy + 0.135 * s
        self.mouth_w, self.mouth_hmax = 0.056 * s, 0.062 * s
        self.background = self._draw_background(rng)
        self._background_f = self.background.astype(np.float32)
        self.head, self.alpha = self._draw_head()
        self._prepare_patches()

    # ---------------------------------------------------------------- static
    def _draw_background(self, rng) -> np.ndarray:
        s = self.s
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
        grad = 0.85 + 0.25 * (1 - yy) + 0.08 * np.sin(2 * np.pi * (xx * rng.uniform(0.5, 1.5) + rng.uniform()))
        img = np.clip(self.back[None, None] * grad[..., None], 0, 255).astype(np.uint8)
        # Neck: a skin column with a shadow under the jaw.
        neck = self.skin * 0.82
        nx, ny = self.cx, self.cy + 0.24 * s
        _fill(img, np.array([[nx - 0.085 * s, ny - 0.06 * s], [nx + 0.085 * s, ny - 0.06 * s],
                             [nx + 0.095 * s, 0.88 * s], [nx - 0.095 * s, 0.88 * s]]), neck.tolist())
        shadow = np.zeros((s, s), np.float32)
        _ellipse(shadow, (nx, ny - 0.01 * s), (0.1 * s, 0.06 * s), 0.3)
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.02 * s)[..., None]
        img = (img * (1.0 - shadow)).astype(np.uint8)
        # Shoulders / torso: a wide rounded shirt with a collar opening.
        _ellipse(img, (self.cx, 1.13 * s), (0.48 * s, 0.34 * s), self.shirt.tolist())
        _fill(img, np.array([[nx - 0.09 * s, 0.775 * s], [nx + 0.09 * s, 0.775 * s], [nx, 0.90 * s]]), neck.tolist())
        return cv2.GaussianBlur(img, (0, 0), 0.6 * s / 256)

    def _head_outline(self, n: int = 72) -> np.ndarray:
        """Egg-shaped outline: broad cheekbones, tapering jaw and chin."""
        th = np.linspace(0, 2 * np.pi, n, endpoint=False)
        lower = np.clip(np.sin(th), 0, None)
        x = self.cx + self.a * np.cos(th) * (1 - 0.22 * lower ** 2)
        y = self.cy + self.b * np.sin(th) * (1 - 0.02 * lower)
        return np.stack([x, y], 1)

    def _draw_head(self) -> tuple[np.ndarray, np.ndarray]:
        s, cx, cy, a, b = self.s, self.cx, self.cy, self.a, self.b
        rgb = np.zeros((s, s, 3), np.uint8)
        alpha = np.zeros((s, s), np.uint8)
        hair = self.hair.tolist()
        # Hair volume behind the skull, slightly larger than the head.
        _ellipse(rgb, (cx, cy - 0.05 * s), (a * 1.12, b * 0.95), hair)
        _ellipse(alpha, (cx, cy - 0.05 * s), (a * 1.12, b * 0.95), 255)
        # Ears at eye/nose height.
        for side in (-1, 1):
            c = (cx + side * a * 0.98, cy + 0.01 * s)
            _ellipse(rgb, c, (0.025 * s, 0.045 * s), (self.skin * 0.85).tolist())
            _ellipse(alpha, c, (0.025 * s, 0.045 * s), 255)
        outline = self._head_outline()
        _fill(rgb, outline, self.skin.tolist())
        _fill(alpha, outline, 255)

        # Hair cap and fringe over the forehead, leaving the brows visible,
        # with a few darker strands so it reads as hair rather than a helmet.
        th = np.linspace(np.pi, 2 * np.pi, 40)
        top = np.stack([cx + a * 1.06 * np.cos(th), cy - 0.03 * s + b * 1.0 * np.sin(th)], 1)
        xs = np.linspace(cx + a * 1.06, cx - a * 1.06, 30)
        fringe = lambda x: cy - 0.11 * s + 0.035 * s * ((x - cx) / a) ** 2 - 0.012 * s * np.cos((x - cx) / a * 7)
        cap = np.concatenate([top, np.stack([xs, fringe(xs)], 1)])
        _fill(rgb, cap, hair)
        _fill(alpha, cap, 255)
        k = np.linspace(0, 1, 12)[:, None]
        for x_end in np.linspace(cx - 0.9 * a, cx + 0.9 * a, 9):
            p0 = np.array([cx + 0.25 * (x_end - cx), cy - 0.03 * s - 0.97 * b])
            p2 = np.array([x_end, fringe(x_end) - 0.006 * s])
            p1 = np.array([x_end + 0.2 * (x_end - cx), p0[1] + 0.25 * (p2[1] - p0[1])])
            curve = (1 - k) ** 2 * p0 + 2 * k * (1 - k) * p1 + k ** 2 * p2
            _line(rgb, curve, (self.hair * 0.7).tolist(), max(1, int(0.004 * s)))

        # Shading map: rounded-form falloff + light from the upper left,
        # then soft darker/lighter blobs for sockets, nose and cheeks.
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        u, v = (xx - cx) / a, (yy - cy) / b
        shade = 1.05 - 0.22 * np.clip(u * u + v * v, 0, 1.5) ** 2 - 0.06 * u - 0.04 * v
        blobs = np.zeros((s, s), np.float32)
        for side in (-1, 1):
            ex = cx + side * self.eye_dx
            _ellipse(blobs, (ex, self.eye_y - 0.004 * s), (0.05 * s, 0.028 * s), -0.14)  # eye sockets
            _ellipse(blobs, (cx + side * 0.02 * s, cy + 0.02 * s), (0.008 * s, 0.05 * s), -0.10)  # nose sides
            _ellipse(blobs, (cx + side * 0.10 * s, cy + 0.07 * s), (0.04 * s, 0.03 * s), 0.04)  # cheeks
            _ellipse(blobs, (cx + side * 0.15 * s, cy + 0.08 * s), (0.03 * s, 0.09 * s), -0.10)  # cheek hollows
        _ellipse(blobs, (cx - 0.004 * s, cy + 0.005 * s), (0.007 * s, 0.05 * s), 0.08)  # nose bridge light
        _ellipse(blobs, (cx, cy + 0.06 * s), (0.018 * s, 0.014 * s), 0.06)  # nose tip
        _ellipse(blobs, (cx, cy + 0.082 * s), (0.028 * s, 0.008 * s), -0.16)  # shadow under nose
        _ellipse(blobs, (cx, self.mouth_y + 0.045 * s), (0.035 * s, 0.012 * s), -0.10)  # under lower lip
        _ellipse(blobs, (cx, cy + 0.215 * s), (0.05 * s, 0.025 * s), 0.05)  # chin
        blobs = cv2.GaussianBlur(blobs, (0, 0), 0.012 * s)
        rgb = np.clip(rgb * (shade + blobs)[..., None], 0, 255).astype(np.uint8)
        # Outside the head carry a mid skin/hair tone so later blurs and the
        # warp's edge interpolation do not bleed a black rim into the face.
        rgb[alpha == 0] = (0.5 * (self.skin + self.hair)).astype(np.uint8)


        # Eyebrows: thick arcs in hair colour.
        for side in (-1, 1):
            t = np.linspace(-1, 1, 12)
            bx = cx + side * (self.eye_dx + 0.004 * s) + t * 0.04 * s
            by = self.eye_y - 0.038 * s - 0.012 * s * (1 - t ** 2) + side * t * 0.003 * s
            _line(rgb, np.stack([bx, by], 1), (self.hair * 0.9).tolist(), max(2, int(0.012 * s)))

        # Nose: alae, nostrils and a soft outline of the bridge side.
        dark = (self.skin * 0.55).tolist()
        ny = cy + 0.07 * s
        for side in (-1, 1):
            t = np.linspace(0, 1, 10)
            _line(rgb, np.stack([cx + side * (0.022 * s + 0.006 * s * np.sin(np.pi * t)), ny - 0.02 * s + 0.025 * s * t], 1),
                  (self.skin * 0.72).tolist(), max(1, int(0.005 * s)))
            _ellipse(rgb, (cx + side * 0.011 * s, ny + 0.002 * s), (0.008 * s, 0.0045 * s), dark, angle=side * 15)
        # Philtrum hint and face-contour shadow line.
        _line(rgb, np.array([[cx, ny + 0.012 * s], [cx, self.mouth_y - 0.02 * s]]), (self.skin * 0.88).tolist(), max(1, int(0.004 * s)))
        rgb = cv2.GaussianBlur(rgb, (0, 0), 0.5 * s / 256)
        return rgb, alpha

    # ------------------------------------------------------------- per frame
    def _prepare_patches(self) -> None:
        """Cache the skin under each eye and the mouth, to redraw them cheaply."""
        s = self.s
        self.eye_boxes = []
        for side in (-1, 1):
            ex = self.cx + side * self.eye_dx
            x0, x1 = int(ex - self.eye_w - 0.01 * s), int(np.ceil(ex + self.eye_w + 0.01 * s))
            y0, y1 = int(self.eye_y - self.eye_h - 0.012 * s), int(np.ceil(self.eye_y + self.eye_h + 0.01 * s))
            self.eye_boxes.append((x0, y0, x1, y1, ex - x0, self.eye_y - y0, self.head[y0:y1, x0:x1].copy()))
        mx0, mx1 = int(self.cx - self.mouth_w - 0.02 * s), int(np.ceil(self.cx + self.mouth_w + 0.02 * s))
        my0 = int(self.mouth_y - 0.04 * s)
        my1 = int(np.ceil(self.mouth_y + self.mouth_hmax + 0.035 * s))
        self.mouth_box = (mx0, my0, mx1, my1, self.head[my0:my1, mx0:mx1].copy())
        self._t = np.linspace(-1, 1, 25)

    def _draw_eye(self, box, closure: float, gaze: tuple[float, float]) -> None:
        x0, y0, x1, y1, ex, ey, skin = box
        s, w, h, t = self.s, self.eye_w, self.eye_h, self._t
        x = ex + w * t
        lower = ey + h * 0.55 * (1 - t ** 2) ** 0.8
        upper_open = ey - h * (1 - t ** 2) ** 0.7 + 0.12 * h * t
        upper = lower + (upper_open - lower) * (1.0 - closure)
        patch = np.empty_like(skin)
        patch[:] = (236, 232, 228)
        ix, iy = ex + gaze[0] * w * 0.25, ey - 0.1 * h + gaze[1] * h * 0.15
        _ellipse(patch, (ix, iy), (0.55 * h * 1.75, 0.55 * h * 1.75), self.iris.tolist())
        _ellipse(patch, (ix, iy), (0.42 * h, 0.42 * h), (15, 12, 12))
        _ellipse(patch, (ix + 0.3 * h, iy - 0.3 * h), (0.14 * h, 0.14 * h), (250, 250, 250))
        mask = np.zeros(skin.shape[:2], np.uint8)
        _fill(mask, np.concatenate([np.stack([x, upper], 1), np.stack([x[::-1], lower[::-1]], 1)]), 255)
        m = (mask.astype(np.float32) / 255)[..., None]
        out = (patch * m + skin * (1 - m)).astype(np.uint8)
        lw = max(1, int(round(0.008 * s)))
        _line(out, np.stack([x, upper], 1), (30, 20, 18), lw + 1)  # upper lid + lashes
        _line(out, np.stack([x, lower], 1), (self.skin * 0.6).tolist(), lw)
        crease = upper_open - 0.45 * h - 0.2 * h * closure
        _line(out, np.stack([x[4:-4], crease[4:-4]], 1), (self.skin * 0.7).tolist(), lw)
        self._frame_head[y0:y1, x0:x1] = out

    def _draw_mouth(self, opening: float) -> None:
        x0, y0, x1, y1, skin = self.mouth_box
        s, t = self.s, self._t
        out = skin.copy()
        mx, my = self.cx - x0, self.mouth_y - y0
        w = self.mouth_w * (1.0 - 0.12 * opening)  # corners draw in as the jaw drops
        h = self.mouth_hmax * opening
        x = mx + w * t
        bulge = (1 - t ** 2) ** 0.6
        up_in = my - 0.35 * h * bulge
        lo_in = my + 0.65 * h * bulge
        # Upper lip: thickest near the centre with two cupid's-bow peaks.
        up_out = up_in - 0.015 * s * bulge - 0.004 * s * np.exp(-((np.abs(t) - 0.22) / 0.12) ** 2)
        lo_out = lo_in + 0.02 * s * bulge
        inner = np.concatenate([np.stack([x, up_in], 1), np.stack([x[::-1], lo_in[::-1]], 1)])
        _fill(out, inner, (55, 18, 22))
        teeth = np.concatenate([np.stack([x[5:-5], up_in[5:-5]], 1),
                                np.stack([x[-6:4:-1], up_in[-6:4:-1] + 0.012 * s * bulge[-6:4:-1]], 1)])
        _fill(out, teeth, (235, 230, 220))
        lip = self.lip.tolist()
        _fill(out, np.concatenate([np.stack([x, lo_in], 1), np.stack([x[::-1], lo_out[::-1]], 1)]), lip)
        _fill(out, np.concatenate([np.stack([x, up_out], 1), np.stack([x[::-1], up_in[::-1]], 1)]), (self.lip * 0.9).tolist())
        _ellipse(out, (mx, lo_in[12] + 0.009 * s), (0.02 * s, 0.004 * s), np.clip(self.lip * 1.15, 0, 255).tolist())
        # Dark lip seam: between the lips when closed, along the upper inner edge when open.
        _line(out, np.stack([x, (up_in + lo_in) / 2 if h < 1.0 else up_in], 1), (self.lip * 0.45).tolist(), max(1, int(0.004 * s)))
        self._frame_head[y0:y1, x0:x1] = out

    def render(self, opening: float, closure: float, pose: tuple[float, float, float, float],
               gaze: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Return one RGB uint8 frame of shape (size, size, 3)."""
        self._frame_head = self.head.copy()
        for box in self.eye_boxes:
            self._draw_eye(box, float(closure), gaze)
        self._draw_mouth(float(np.clip(opening, 0.0, 1.0)))
        dx, dy, rot, scale = pose
        M = cv2.getRotationMatrix2D((self.cx, self.cy + 0.2 * self.s), rot, scale)
        M[:, 2] += (dx, dy)
        head = cv2.warpAffine(self._frame_head, M, (self.s, self.s), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(self.alpha, M, (self.s, self.s), flags=cv2.INTER_LINEAR)
        a = alpha.astype(np.float32)[..., None] * (1.0 / 255.0)
        bg = self._background_f
        return (bg + (head.astype(np.float32) - bg) * a).astype(np.uint8)
