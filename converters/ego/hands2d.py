"""2D hand tracks from raw video when no annotation exists: MediaPipe Hands on CPU, offline.

Optional extra (``pip install "vlaflow[hands]"`` = ``mediapipe==0.10.14``, whose wheel bundles the palm
detector and hand-landmark models, so nothing is downloaded). Used by ``video_trajectory`` with
``--opt hands=mediapipe``: every sampled frame is tracked, wrist and five fingertips per hand fill
``*_hand.wrist_uv`` / ``*_hand.fingertips_uv`` (normalized image coordinates, as MediaPipe returns them).

The full landmark model (``model_complexity=1``) is the default: on the real hand-free EPIC frames the
lite model (0) reported a hand in 12% of frames (50 of 401), the full one in none, at the same speed
(~110 frames/s at 456x256 on 2 cores, ``benchmarks/hands2d.py``).

Handedness: MediaPipe labels hands as if the image were mirrored (selfie camera). Egocentric and world
cameras are not mirrored, so its "Left" is the person's right hand; ``mirrored=True`` keeps its labels.
"""
from __future__ import annotations

import numpy as np

from vlaflow.schemas import InputError

# MediaPipe hand landmark ids: wrist, then thumb/index/middle/ring/pinky tips (our fingertip order).
WRIST, TIPS = 0, (4, 8, 12, 16, 20)
SIDES = ("left", "right")


def assign_sides(handedness: list[str], mirrored: bool) -> list[str]:
    """MediaPipe labels ("Left"/"Right") → the person's hand ("left"/"right")."""
    out = []
    for label in handedness:
        side = label.lower()
        if not mirrored:
            side = "right" if side == "left" else "left"
        out.append(side)
    return out


class MediaPipeHands:
    """Tracks up to two hands through a sequence of RGB frames (video mode: detection reused between frames)."""

    def __init__(self, mirrored: bool = False, model_complexity: int = 1, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError:
            raise InputError('--opt hands=mediapipe needs the optional extra: pip install "vlaflow[hands]"') from None
        self.mirrored = mirrored
        self._hands = mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=2,
                                               model_complexity=model_complexity,
                                               min_detection_confidence=min_confidence,
                                               min_tracking_confidence=min_confidence)
        self.wrist = {s: [] for s in SIDES}
        self.tips = {s: [] for s in SIDES}
        self.valid = {s: [] for s in SIDES}

    def add(self, rgb: np.ndarray) -> None:
        res = self._hands.process(np.ascontiguousarray(rgb))
        found = {}
        if res.multi_hand_landmarks:
            labels = [h.classification[0].label for h in res.multi_handedness]
            scores = [h.classification[0].score for h in res.multi_handedness]
            for side, score, lm in zip(assign_sides(labels, self.mirrored), scores, res.multi_hand_landmarks):
                if side not in found or score > found[side][0]:
                    pts = np.array([[p.x, p.y] for p in lm.landmark], np.float64)
                    found[side] = (score, pts)
        for side in SIDES:
            if side in found:
                pts = found[side][1]
                self.wrist[side].append(pts[WRIST])
                self.tips[side].append(pts[list(TIPS)])
                self.valid[side].append(True)
            else:
                self.wrist[side].append(np.zeros(2))
                self.tips[side].append(np.zeros((5, 2)))
                self.valid[side].append(False)

    def image_points(self) -> tuple[dict, dict]:
        """→ (uv slot → [S, n, 2], uv slot → [S, n] valid) for ``trajectory.Observations``."""
        pts, ok = {}, {}
        for side in SIDES:
            v = np.asarray(self.valid[side], bool)
            pts[f"{side}_hand.wrist_uv"] = np.asarray(self.wrist[side]).reshape(-1, 1, 2)
            ok[f"{side}_hand.wrist_uv"] = v[:, None]
            pts[f"{side}_hand.fingertips_uv"] = np.asarray(self.tips[side]).reshape(-1, 5, 2)
            ok[f"{side}_hand.fingertips_uv"] = np.repeat(v[:, None], 5, 1)
        return pts, ok

    def close(self) -> None:
        if self._hands is not None:
            self._hands.close()
            self._hands = None


class TapDecoder:
    """Wraps a decoder so each decoded frame also reaches ``sink`` (one decode feeds storage and tracking)."""

    def __init__(self, decoder, sink):
        self.decoder, self.sink, self.index = decoder, sink, decoder.index

    def frames(self, wanted):
        for i, rgb in self.decoder.frames(wanted):
            self.sink(rgb)
            yield i, rgb

    def close(self):
        self.decoder.close()
