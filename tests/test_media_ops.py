"""Each node type and each effect on video and audio, computed by the step worker's code on
media made with ``ffmpeg -f lavfi``: duration, size, frame rate, streams and sampled content."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from node.executor.worker import compute
from node.media.errors import MediaError
from node.pixels.effects import EFFECTS
from node.pixels.params import normalize_params
from tests.media import (
    BLUE,
    GREEN,
    RED,
    colour_steps,
    facts,
    frames,
    make,
    mean_colour,
    near,
    pattern_clip,
    samples,
    solid,
    tone,
)

MP4, WAV, PNG = "video/mp4", "audio/wave", "image/png"
NORMAL_SEQUENCE = {"crossfade": 0.0, "width": 0, "height": 0, "fps": 0.0, "sample_rate": 0}


class Media:
    """The test media, made once per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clip = pattern_clip(root / "clip.mp4")  # 160x120, 25 fps, 2 s, 440 Hz
        self.steps = colour_steps(root / "steps.mkv", [RED, GREEN, BLUE])  # 3 s, 1 s per colour
        self.red = solid(root / "red.mp4", RED)
        self.blue_wide = solid(root / "blue.mp4", BLUE, size="200x100", rate=30, seconds=1.5)
        self.tone = tone(root / "tone.wav")  # 2 s, 440 Hz, 44.1 kHz
        self.low_tone = tone(root / "low.wav", frequency=220, seconds=3.0)
        self.square = make(
            root / "square.png", "-f", "lavfi", "-i", "color=c=white:size=40x40", "-frames:v", "1"
        )


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("media"))


def run(
    out: Path,
    kind: str,
    config: Mapping[str, Any],
    inputs: list[tuple[Path, str]],
    encode: str = "lossless",
) -> Path:
    """Compute one step as a worker does; the output's path."""
    job = {
        "type": kind,
        "config": {**config, "encode": encode},
        "inputs": [str(path) for path, _ in inputs],
        "media_types": [media_type for _, media_type in inputs],
        "output": str(out),
    }
    media_type = compute(job)
    assert media_type.endswith("/x-matroska" if encode == "lossless" else "/mp4")
    return out


def transform(**changes: float) -> dict[str, float]:
    """A TRANSFORM config: every field at its neutral value but ``changes``."""
    neutral = {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "gamma": 1.0, "hue": 0.0}
    return {**neutral, "blur": 0.0, "sharpen": 0.0, "speed": 1.0, **changes}


def effect(name: str, **given: Any) -> dict[str, Any]:
    params, problems = normalize_params(EFFECTS[name].params, given)
    assert not problems
    return {"effect": name, "effect_version": EFFECTS[name].version, "params": params}


def test_lossless_intermediate_layout(media: Media, tmp_path: Path) -> None:
    """An intermediate is FFV1 + PCM in Matroska with the input's size, rate and length."""
    out = run(tmp_path / "out", "EFFECT", effect("invert"), [(media.clip, MP4)])
    got = facts(out)
    assert got["format"] == "matroska,webm"
    assert got["codecs"] == ["ffv1", "pcm_s16le"]
    assert (got["size"], got["fps"], got["frames"]) == ((160, 120), "25", 50)
    assert got["audio_s"] == pytest.approx(2.0, abs=0.03)


def test_delivery_encode_is_h264_aac_mp4_with_index_first(media: Media, tmp_path: Path) -> None:
    out = run(tmp_path / "out", "EFFECT", effect("sepia"), [(media.clip, MP4)], encode="delivery")
    got = facts(out)
    assert got["codecs"] == ["h264", "aac"] and got["format"].startswith("mov,mp4")
    assert (got["size"], got["frames"]) == ((160, 120), 50)
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading


@pytest.mark.parametrize("name", sorted(name for name, item in EFFECTS.items() if item.apply is not None))
def test_every_effect_on_video_matches_the_image_effect_per_frame(
    media: Media, tmp_path: Path, name: str
) -> None:
    """Sampled frames equal the image effect on the same source frame: exactly or within a
    level where ffmpeg rounds, within a few where its Gaussian is recursive (blur, sharpen, dog).
    The sound is kept."""
    given = {"seconds": 0.0} if name == "wait" else {}  # the frames, not the waiting, are tested
    out = run(tmp_path / "out", "EFFECT", effect(name, **given), [(media.clip, MP4)])
    source, result = frames(media.clip), frames(out)
    assert result.shape == source.shape
    apply = EFFECTS[name].apply
    assert apply is not None
    params = effect(name, **given)["params"]
    differences = [np.abs(result[i].astype(int) - apply(source[i], params).astype(int)) for i in (0, 24, 49)]
    mean_limit = {"blur": 2.0, "sharpen": 1.0, "dog": 8.0}.get(name, 0.5)
    assert float(np.mean(differences)) <= mean_limit
    if name not in ("blur", "sharpen", "dog"):
        assert max(int(difference.max()) for difference in differences) <= 1
    assert facts(out)["audio_s"] == pytest.approx(2.0, abs=0.03)


def test_identity_never_reaches_a_worker(media: Media, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="identity"):
        run(tmp_path / "out", "EFFECT", effect("identity"), [(media.clip, MP4)])


def test_segment_cuts_exact_frames_and_the_same_sound(media: Media, tmp_path: Path) -> None:
    """start 1 s, end 2 s of red|green|blue seconds: 25 green frames and 1 s of sound."""
    out = run(tmp_path / "out", "SEGMENT", {"start": 1.0, "end": 2.0}, [(media.steps, "video/x-matroska")])
    got = facts(out)
    assert (got["frames"], got["audio_s"]) == (25, 1.0)
    assert all(near(mean_colour(frame), GREEN) for frame in frames(out))


def test_segment_to_the_end_and_of_audio(media: Media, tmp_path: Path) -> None:
    out = run(tmp_path / "video", "SEGMENT", {"start": 2.0, "end": 0.0}, [(media.steps, "video/x-matroska")])
    assert facts(out)["frames"] == 25 and near(mean_colour(frames(out)[0]), BLUE)
    sound = run(tmp_path / "sound", "SEGMENT", {"start": 0.5, "end": 1.25}, [(media.tone, WAV)])
    got = facts(sound)
    assert (got["streams"], got["sample_rate"], got["audio_s"]) == (["audio"], 44100, 0.75)


def test_segment_past_the_end_is_a_clear_error(media: Media, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"SEGMENT starts at 9.0 s, but the input is 2.000 s long"):
        run(tmp_path / "out", "SEGMENT", {"start": 9.0, "end": 0.0}, [(media.clip, MP4)])


def test_resize_scales_every_frame_like_an_image(media: Media, tmp_path: Path) -> None:
    config = {"width": 80, "height": 80, "fit": "cover", "filter": "lanczos"}
    out = run(tmp_path / "out", "RESIZE", config, [(media.clip, MP4)])
    got = facts(out)
    assert (got["size"], got["frames"], got["fps"]) == ((80, 80), 50, "25")


def test_transform_speed_keeps_frames_and_pitch(media: Media, tmp_path: Path) -> None:
    config = transform(speed=2.0)
    out = run(tmp_path / "out", "TRANSFORM", config, [(media.clip, MP4)])
    got = facts(out)
    assert (got["frames"], got["fps"]) == (50, "50")
    assert got["audio_s"] == pytest.approx(1.0, abs=0.03)
    spectrum = np.abs(np.fft.rfft(samples(out)))
    assert np.argmax(spectrum) * 48000 / len(samples(out)) == pytest.approx(440, abs=5)  # atempo keeps pitch


def test_transform_colour_changes_the_picture(media: Media, tmp_path: Path) -> None:
    config = transform(brightness=0.2, saturation=0.0)
    out = run(tmp_path / "out", "TRANSFORM", config, [(media.red, MP4)])
    red, green, blue = mean_colour(frames(out)[0])
    assert abs(red - green) <= 4 and abs(green - blue) <= 4  # saturation 0: gray (YUV rounding aside)
    assert red > 76 + 30  # red's luma is 76; brightness lifted it


def test_transform_on_audio_only_allows_speed(media: Media, tmp_path: Path) -> None:
    config = transform(brightness=0.5)
    with pytest.raises(MediaError, match="picture settings need a picture"):
        run(tmp_path / "out", "TRANSFORM", config, [(media.tone, WAV)])


def test_sequence_normalizes_size_rate_and_sound(media: Media, tmp_path: Path) -> None:
    """red (160x120, 25 fps, 1 s, silent) then blue (200x100, 30 fps, 1.5 s): 1 + 1.5 s at the
    first clip's size and rate, the wide clip letterboxed, silence where there was no sound."""
    out = run(tmp_path / "out", "SEQUENCE", NORMAL_SEQUENCE, [(media.red, MP4), (media.blue_wide, MP4)])
    got = facts(out)
    assert (got["size"], got["fps"], got["frames"]) == ((160, 120), "25", 25 + 38)
    assert got["streams"] == ["video"]
    pictures = frames(out)
    assert near(mean_colour(pictures[0]), RED) and near(mean_colour(pictures[-1][40:80]), BLUE)
    assert near(mean_colour(pictures[-1][:20]), (0, 0, 0))  # letterbox bars


def test_sequence_crossfade_overlaps_picture_and_sound(media: Media, tmp_path: Path) -> None:
    config = {**NORMAL_SEQUENCE, "crossfade": 0.4}
    out = run(tmp_path / "out", "SEQUENCE", config, [(media.clip, MP4), (media.steps, "video/x-matroska")])
    got = facts(out)
    assert got["frames"] == 50 + 75 - 10
    assert got["audio_s"] == pytest.approx((50 + 75 - 10) / 25, abs=0.03)
    assert near(mean_colour(frames(out)[-1]), BLUE)


def test_sequence_of_audio(media: Media, tmp_path: Path) -> None:
    config = {**NORMAL_SEQUENCE, "crossfade": 0.5}
    out = run(tmp_path / "out", "SEQUENCE", config, [(media.tone, WAV), (media.low_tone, WAV)])
    got = facts(out)
    assert (got["streams"], got["sample_rate"], got["audio_s"]) == (["audio"], 44100, 4.5)


def test_layer_places_scales_and_mixes(media: Media, tmp_path: Path) -> None:
    """A white 40x40 image at (10, 20), scale 0.5, opacity 0.5 over a red clip, for its length."""
    config = {"x": 10, "y": 20, "scale": 0.5, "opacity": 0.5}
    out = run(tmp_path / "out", "LAYER", config, [(media.red, MP4), (media.square, PNG)])
    got = facts(out)
    assert (got["size"], got["frames"]) == ((160, 120), 25)
    picture = frames(out)[-1]
    assert near(mean_colour(picture[22:38, 12:28]), (255, 128, 128))  # half white over red
    assert near(mean_colour(picture[60:, 60:]), RED)


def test_layer_clip_over_clip_lasts_as_long_as_the_base(media: Media, tmp_path: Path) -> None:
    config = {"x": 0, "y": 0, "scale": 1.0, "opacity": 1.0}
    out = run(tmp_path / "out", "LAYER", config, [(media.red, MP4), (media.clip, MP4)])
    assert facts(out)["frames"] == 25


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("average", (128, 0, 128)), ("add", (255, 0, 255)), ("multiply", (0, 0, 0)), ("lighten", (255, 0, 255))],
)
def test_blend_modes(media: Media, tmp_path: Path, mode: str, expected: tuple[int, int, int]) -> None:
    out = run(
        tmp_path / "out", "BLEND", {"mode": mode, "opacity": 1.0}, [(media.red, MP4), (media.blue_wide, MP4)]
    )
    got = facts(out)
    assert (got["size"], got["frames"]) == ((160, 120), 25)
    assert near(mean_colour(frames(out)[10]), expected, tolerance=2)


def test_mux_takes_picture_and_sound_from_different_inputs(media: Media, tmp_path: Path) -> None:
    out = run(
        tmp_path / "out",
        "MUX",
        {"video": 0, "audio": 1, "length": "video"},
        [(media.red, MP4), (media.tone, WAV)],
    )
    got = facts(out)
    assert (got["streams"], got["frames"], got["sample_rate"]) == (["video", "audio"], 25, 44100)
    assert got["audio_s"] == 1.0  # the tone is cut to the picture's second
    short = run(
        tmp_path / "short",
        "MUX",
        {"video": 1, "audio": 0, "length": "shortest"},
        [(media.tone, WAV), (media.steps, "video/x-matroska")],
    )
    assert facts(short)["frames"] == 50  # 3 s of picture cut to the 2 s tone


def test_mux_without_sound_is_a_clear_error(media: Media, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="input 2 has no audio stream"):
        run(
            tmp_path / "out",
            "MUX",
            {"video": 0, "audio": 1, "length": "video"},
            [(media.clip, MP4), (media.red, MP4)],
        )


def test_audio_mix_gains(media: Media, tmp_path: Path) -> None:
    """The clip's 440 Hz at 0 dB and the 220 Hz tone at -60 dB: the mix is the 440 Hz tone, as
    long as the longest input, stereo at the first input's rate."""
    config = {"gains": [0.0, -60.0], "normalize": "none", "duration": "longest"}
    out = run(tmp_path / "out", "AUDIO_MIX", config, [(media.clip, MP4), (media.low_tone, WAV)])
    got = facts(out)
    assert (got["streams"], got["sample_rate"], got["audio_s"]) == (["audio"], 48000, 3.0)
    first_two_seconds = samples(out)[: 2 * 48000]
    spectrum = np.abs(np.fft.rfft(first_two_seconds))
    assert np.argmax(spectrum) / 2 == pytest.approx(440, abs=2)


def test_audio_mix_loudness_normalization_changes_the_level(media: Media, tmp_path: Path) -> None:
    plain = {"gains": [-20.0, -20.0], "normalize": "none", "duration": "shortest"}
    quiet = run(tmp_path / "quiet", "AUDIO_MIX", plain, [(media.tone, WAV), (media.low_tone, WAV)])
    loud = run(
        tmp_path / "loud",
        "AUDIO_MIX",
        {**plain, "normalize": "loudness"},
        [(media.tone, WAV), (media.low_tone, WAV)],
    )
    assert facts(loud)["audio_s"] == 2.0
    assert np.sqrt(np.mean(samples(loud) ** 2)) > 2 * np.sqrt(np.mean(samples(quiet) ** 2))


def test_chain_runs_fused_steps_in_one_pass(media: Media, tmp_path: Path) -> None:
    """A CHAIN of dog then sepia equals sepia applied to dog's lossless output."""
    dog, sepia = effect("dog"), effect("sepia")
    ops = [{"type": "EFFECT", "type_version": "1", "config": config} for config in (dog, sepia)]
    chained = run(tmp_path / "chained", "CHAIN", {"ops": ops}, [(media.clip, MP4)])
    first = run(tmp_path / "first", "EFFECT", dog, [(media.clip, MP4)])
    second = run(tmp_path / "second", "EFFECT", sepia, [(first, "video/x-matroska")])
    assert np.array_equal(frames(chained), frames(second))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "input 1 is empty \\(0 bytes\\)"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500, "input 1 is not a readable"),
    ],
)
def test_corrupt_and_empty_inputs_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(MediaError, match=message) as caught:
        run(tmp_path / "out", "EFFECT", effect("invert"), [(bad, MP4)])
    assert str(tmp_path) not in str(caught.value)  # no server paths in what clients read


def test_every_type_gives_identical_bytes_in_a_fresh_process(media: Media, tmp_path: Path) -> None:
    """Every node type, run by two separate worker processes: the same bytes, lossless and
    delivery."""
    jobs = _one_job_per_type(media)
    first, second = (_start_worker(jobs, tmp_path / f"round{round_}") for round_ in (1, 2))  # side by side
    for job, one, other in zip(jobs, _outputs(*first), _outputs(*second), strict=True):
        assert one.read_bytes() == other.read_bytes(), job["type"]


def _one_job_per_type(media: Media) -> list[dict[str, Any]]:
    changed = transform(
        brightness=0.1, contrast=1.1, saturation=1.2, hue=10.0, blur=1.0, sharpen=0.5, speed=1.5
    )
    steps: list[tuple[str, dict[str, Any], list[Path], list[str]]] = [
        ("EFFECT", effect("dog"), [media.clip], [MP4]),
        ("EFFECT", effect("contrast"), [media.clip], [MP4]),
        ("SEGMENT", {"start": 0.5, "end": 1.5}, [media.clip], [MP4]),
        ("RESIZE", {"width": 64, "height": 0, "fit": "contain", "filter": "bilinear"}, [media.clip], [MP4]),
        ("TRANSFORM", changed, [media.clip], [MP4]),
        ("SEQUENCE", {**NORMAL_SEQUENCE, "crossfade": 0.2}, [media.clip, media.blue_wide], [MP4, MP4]),
        ("LAYER", {"x": 5, "y": 5, "scale": 0.5, "opacity": 0.7}, [media.clip, media.square], [MP4, PNG]),
        ("BLEND", {"mode": "overlay", "opacity": 0.8}, [media.clip, media.red], [MP4, MP4]),
        ("MUX", {"video": 0, "audio": 1, "length": "video"}, [media.red, media.tone], [MP4, WAV]),
        (
            "AUDIO_MIX",
            {"gains": [0.0, -3.0], "normalize": "loudness", "duration": "first"},
            [media.clip, media.tone],
            [MP4, WAV],
        ),
    ]
    return [
        {
            "type": kind,
            "config": {**config, "encode": encode},
            "inputs": [str(p) for p in paths],
            "media_types": types,
        }
        for kind, config, paths, types in steps
        for encode in ("lossless", "delivery")
    ]


def _start_worker(jobs: list[dict[str, Any]], out_dir: Path) -> tuple[subprocess.Popen[str], list[Path]]:
    """A worker process given every job; its outputs' paths."""
    out_dir.mkdir()
    outputs = [out_dir / f"{index}.out" for index in range(len(jobs))]
    worker = subprocess.Popen(
        [sys.executable, "-m", "node.executor.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None
    for index, (job, path) in enumerate(zip(jobs, outputs, strict=True)):
        worker.stdin.write(json.dumps({**job, "job": index, "output": str(path)}) + "\n")
    worker.stdin.close()
    return worker, outputs


def _outputs(worker: subprocess.Popen[str], outputs: list[Path]) -> list[Path]:
    """Wait for the worker; every job must have succeeded."""
    assert worker.stdout is not None
    with worker.stdout:
        lines = [json.loads(line) for line in worker.stdout]
    assert worker.wait(timeout=300) == 0
    answers = [line for line in lines if "ok" in line]  # a long job's progress lines come first
    assert [answer["ok"] for answer in answers] == [True] * len(outputs), answers
    return outputs


class Awkward:
    """Inputs that trip naive media code: a rotated phone clip, variable frame rate, a song with
    cover art, an animated GIF, odd sizes, a 60 fps clip, a file whose sound is shorter than its
    picture, and a playlist pointing at a local file."""

    def __init__(self, root: Path) -> None:
        pattern = "testsrc2=size=160x90:rate=25:duration=2"
        sine = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2"]
        upright = make(root / "upright.mp4", "-f", "lavfi", "-i", pattern, *sine, "-c:a", "aac")
        self.rotated = make(
            root / "rotated.mp4", "-i", str(upright), "-c", "copy", "-metadata:s:v:0", "rotate=90"
        )
        drop_gap = "select='not(between(n\\,10\\,29))'"
        self.variable = make(
            root / "vfr.mp4",
            "-f",
            "lavfi",
            "-i",
            pattern,
            *sine,
            "-vf",
            drop_gap,
            "-fps_mode",
            "vfr",
            "-c:a",
            "aac",
        )
        cover = make(root / "cover.png", "-f", "lavfi", "-i", "color=c=red:size=32x32", "-frames:v", "1")
        self.song = make(
            root / "song.mp3", *sine, "-i", str(cover), "-map", "0", "-map", "1", "-c:v", "png",
            "-disposition:v", "attached_pic",
        )  # fmt: skip
        self.gif = make(
            root / "anim.gif", "-f", "lavfi", "-i", "color=c=white:size=40x40:rate=10:duration=0.3"
        )
        self.odd = make(
            root / "odd.mkv",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25:duration=1",
            "-vf",
            "scale=161:121",
            "-c:v",
            "ffv1",
        )
        self.fast = make(
            root / "fast.mkv",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=60:duration=0.5",
            "-c:v",
            "ffv1",
        )
        self.short_sound = make(
            root / "short.mkv",
            *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=3"),
            *("-f", "lavfi", "-i", "sine=sample_rate=48000:duration=1"),
            *("-c:v", "ffv1", "-c:a", "pcm_s16le"),
        )
        self.playlist = root / "list.m3u8"
        self.playlist.write_text(
            f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\nfile://{self.rotated}\n#EXT-X-ENDLIST\n"
        )


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Awkward:
    return Awkward(tmp_path_factory.mktemp("awkward"))


def test_rotated_clip_is_upright(awkward: Awkward, tmp_path: Path) -> None:
    """A 160x90 clip flagged as turned 90 degrees is a 90x160 picture, as players show it."""
    resized = run(
        tmp_path / "resized",
        "RESIZE",
        {"width": 80, "height": 0, "fit": "contain", "filter": "lanczos"},
        [(awkward.rotated, MP4)],
    )
    assert facts(resized)["size"] == (80, 142)
    contrast = run(tmp_path / "contrast", "EFFECT", effect("contrast"), [(awkward.rotated, MP4)])
    assert facts(contrast)["size"] == (90, 160)


def test_variable_frame_rate_keeps_picture_and_sound_together(awkward: Awkward, tmp_path: Path) -> None:
    out = run(
        tmp_path / "out",
        "LAYER",
        {"x": 0, "y": 0, "scale": 1.0, "opacity": 1.0},
        [(awkward.variable, MP4), (awkward.gif, "image/gif")],
    )
    got = facts(out)
    assert got["audio_s"] == pytest.approx(got["frames"] / Fraction(str(got["fps"])), abs=0.01)


def test_cover_art_is_not_video(awkward: Awkward, tmp_path: Path) -> None:
    out = run(tmp_path / "out", "SEGMENT", {"start": 0.5, "end": 1.5}, [(awkward.song, "audio/mpeg")])
    got = facts(out)
    assert (got["streams"], got["audio_s"]) == (["audio"], 1.0)


def test_odd_sized_raw_frame_effect_gets_an_even_delivery(awkward: Awkward, tmp_path: Path) -> None:
    out = run(
        tmp_path / "out", "EFFECT", effect("contrast"), [(awkward.odd, "video/x-matroska")], encode="delivery"
    )
    assert facts(out)["size"] == (162, 122)


def test_rate_conversion_keeps_sound_as_long_as_the_picture(
    awkward: Awkward, media: Media, tmp_path: Path
) -> None:
    out = run(
        tmp_path / "out", "SEQUENCE", NORMAL_SEQUENCE, [(media.red, MP4), (awkward.fast, "video/x-matroska")]
    )
    got = facts(out)
    assert got["frames"] == 25 + 13 and got["audio_s"] is None  # 30 frames at 60 fps -> 12.5 -> 13 at 25
    with_sound = run(
        tmp_path / "sound",
        "SEQUENCE",
        NORMAL_SEQUENCE,
        [(media.clip, MP4), (awkward.fast, "video/x-matroska")],
    )
    got = facts(with_sound)
    assert got["audio_s"] == pytest.approx(got["frames"] / 25, abs=0.001)


def test_slow_speed_sound_is_exactly_as_long_as_the_picture(media: Media, tmp_path: Path) -> None:
    out = run(tmp_path / "out", "TRANSFORM", transform(speed=0.3), [(media.clip, MP4)])
    got = facts(out)
    assert got["audio_s"] == pytest.approx(got["frames"] / Fraction(str(got["fps"])), abs=0.001)


def test_sound_length_comes_from_the_sound_stream(awkward: Awkward, media: Media, tmp_path: Path) -> None:
    """MUX shortest with 1 s of sound from a file whose picture lasts 3 s: 1 s, not 3."""
    config = {"video": 0, "audio": 1, "length": "shortest"}
    out = run(tmp_path / "out", "MUX", config, [(media.clip, MP4), (awkward.short_sound, "video/x-matroska")])
    assert facts(out)["frames"] == 25


def test_nothing_left_is_an_error_not_an_empty_file(media: Media, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="holds no whole frame"):
        run(tmp_path / "out", "SEGMENT", {"start": 0.01, "end": 0.015}, [(media.clip, MP4)])
    assert not (tmp_path / "out").exists()


def test_playlists_cannot_read_other_files(awkward: Awkward, media: Media, tmp_path: Path) -> None:
    config = {"x": 0, "y": 0, "scale": 1.0, "opacity": 1.0}
    with pytest.raises(MediaError, match="not a readable image, video or audio file"):
        run(tmp_path / "out", "LAYER", config, [(media.clip, MP4), (awkward.playlist, "image/png")])
