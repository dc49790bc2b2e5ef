"""Writing one evaluation episode as an mp4 (`decision-minrnn evaluate --video DIR`).

Frames come from Gymnasium's MuJoCo renderer (render_mode="rgb_array"); imageio with its bundled ffmpeg
(the `video` extra) encodes them. Nothing here is needed for training or scoring.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import VideoError, first_line, install_hint


def prepare_headless_rendering() -> None:
    """Without a display, use EGL for off-screen rendering unless the user chose a backend.

    Gymnasium's renderer tries GLFW first when MUJOCO_GL is unset; without a display that fails inside
    mjr_makeContext instead of falling back. EGL renders off-screen, on a GPU or with Mesa's software EGL.
    Must run before the first render: PyOpenGL fixes its platform when first imported.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def check_encoder() -> None:
    """Fail early, before any episode runs, when the mp4 encoder is missing."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise VideoError(f"--video needs imageio and imageio-ffmpeg: {install_hint('video')}") from None


def render_frame(env) -> np.ndarray:
    try:
        frame = env.render()
    except Exception as exc:  # noqa: BLE001 - GL backends fail with many exception types
        raise VideoError(
            f"cannot render {env.spec.id if env.spec else 'the environment'} "
            f"(MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}): {first_line(exc, 200)}; "
            "try MUJOCO_GL=egl or MUJOCO_GL=osmesa"
        ) from None
    if frame is None:
        raise VideoError("the environment returned no frame (it was not made with render_mode='rgb_array')")
    return frame


def write_mp4(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Encode RGB frames (H, W, 3) uint8 as H.264 mp4; returns the path."""
    check_encoder()
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1: MuJoCo's default 480x480 is fine either way, but other sizes must not be resized.
    imageio.mimsave(path, frames, fps=fps, macro_block_size=1)
    return path
