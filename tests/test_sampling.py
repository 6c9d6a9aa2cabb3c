import numpy as np

from data.sampling import SamplingPolicy


def test_linspace_picks_evenly_spaced_frames_and_short_videos_keep_all():
    frames = np.arange(0, 300, 10)  # 30 frames
    assert SamplingPolicy("linspace", count=4).select_frames(frames).tolist() == [0, 100, 190, 290]
    assert SamplingPolicy("linspace", count=32).select_frames(frames).tolist() == frames.tolist()
    picked = SamplingPolicy("linspace", count=29).select_frames(frames)
    assert len(np.unique(picked)) == 29


def test_every_kth_available_frame_and_all():
    frames = np.array([0, 10, 30, 40, 70])  # gaps where no face was found
    assert SamplingPolicy("every", every=2).select_frames(frames).tolist() == [0, 30, 70]
    assert SamplingPolicy("all").select_frames(frames).tolist() == frames.tolist()
    assert SamplingPolicy("linspace", count=3).select_frames(np.array([], dtype=int)).tolist() == []


def test_face_policy():
    assert SamplingPolicy(faces="first").keep_face(1) and not SamplingPolicy(faces="first").keep_face(2)
    assert SamplingPolicy(faces="all").keep_face(3)
