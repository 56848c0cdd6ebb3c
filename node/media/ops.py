"""The node types on video and audio, as filter-graph builders (see ``node.media.graph``).

Conventions shared by every type (docs/recipes-and-media.md "Node types"):

- pixel work happens in planar 8-bit RGB (``gbrp``), as on images;
- a result is as long as its *timeline* input: the first input that is a clip (a still image
  loops for as long as needed); cuts are counted in frames, and audio in samples aligned to
  those frames, so lengths are exact;
- audio comes from the first input that has any, unless the type says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from node.media.errors import MediaError
from node.media.graph import Av, Graph
from node.media.video_effects import BOUND_NAME, VIDEO_EFFECTS
from node.pixels.image_ops import resize_sizes

RGB = "format=rgb24,format=gbrp"  # via rgb24: the same YUV->RGB conversion as raw frames
EXACT = "+accurate_rnd+bitexact+full_chroma_int"  # the same bytes on every CPU
SCALE_FLAGS = {"lanczos": "lanczos" + EXACT, "bilinear": "bilinear" + EXACT, "nearest": "neighbor" + EXACT}
FFMPEG_BLEND_MODES = {"add": "addition"}  # our name -> ffmpeg's, where they differ
DEFAULT_SAMPLE_RATE = 48000
# TRANSFORM parameter -> (its filter, the commands that set it) for per-frame values. gblur's
# vertical sigma is its own option: set once, it would stay at the first frame's value.
TRANSFORM_COMMANDS: dict[str, tuple[str, ...]] = {
    "brightness": ("eq", "brightness"),
    "contrast": ("eq", "contrast"),
    "saturation": ("eq", "saturation"),
    "gamma": ("eq", "gamma"),
    "hue": ("hue", "h"),
    "blur": ("gblur", "sigma", "sigmaV"),
}


def _needs_video(av: Av, what: str) -> str:
    if av.video is None:
        raise MediaError(f"{what} needs a picture, but this input has only audio")
    return av.video


def effect(graph: Graph, av: Av, config: Mapping[str, Any]) -> Av:
    """EFFECT: the image effect on every frame; audio untouched."""
    name = config["effect"]
    build = VIDEO_EFFECTS.get(name)
    if build is None:
        raise MediaError(f"effect {name} has no ffmpeg filter; it runs on raw frames alone")
    video = _in_rgb(graph, av, _needs_video(av, f"effect {name}"))
    return av.with_(video=build(graph, video, config["params"]), rgb=True)


def _in_rgb(graph: Graph, av: Av, video: str) -> str:
    """The picture in planar RGB, converted unless an earlier step left it so."""
    return video if av.rgb else graph.filter(video, RGB)


def resize(graph: Graph, av: Av, config: Mapping[str, Any]) -> Av:
    """RESIZE: the same sizes as for an image of the frame's size."""
    video = _in_rgb(graph, av, _needs_video(av, "RESIZE"))
    scaled_w, scaled_h, crop = resize_sizes(av.width, av.height, config)
    filters = f"scale={scaled_w}:{scaled_h}:flags={SCALE_FLAGS[config['filter']]},setsar=1"
    if crop:
        filters += f",crop={crop[0]}:{crop[1]}"
    width, height = crop or (scaled_w, scaled_h)
    return av.with_(video=graph.filter(video, filters), width=width, height=height, rgb=True)


def transform(graph: Graph, av: Av, config: Mapping[str, Any]) -> Av:
    """TRANSFORM: colour and sharpness on the picture, then speed on picture and sound."""
    video_filters = _picture_filters(config)
    if video_filters and av.video is None:
        raise MediaError("TRANSFORM's picture settings need a picture, but this input has only audio")
    video, audio = av.video, av.audio
    speed = config["speed"]
    fps = av.fps * Fraction(speed).limit_denominator(1000)
    if video is not None:
        # fps= after setpts passes every frame through and tells the encoder the new rate
        filters = [*video_filters, *([f"setpts=PTS/{speed:.6g},fps={fps}"] if speed != 1 else [])]
        video = graph.filter(video, ",".join(filters) or "null")
    timed = av.with_(video=video, fps=fps, rgb=av.rgb and not video_filters)  # eq and hue work in YUV
    samples = _samples_for(timed, av.sample_rate) if video is not None else round(av.samples / speed)
    if audio is not None and speed != 1:
        # atempo's length is off by some milliseconds: pad or cut to the exact count
        tempo = ",".join(f"atempo={factor:.6g}" for factor in _tempo_factors(speed))
        audio = graph.filter(audio, f"{tempo},{_exact_samples(samples)}")
    return timed.with_(audio=audio, samples=samples)


def _picture_filters(config: Mapping[str, Any]) -> list[str]:
    """eq, hue, blur and sharpen as filters; parameters bound to an analysis (``sendcmd``: a file
    of per-frame commands, ``node.media.curves``) keep their filter, named, to be sent values."""
    bound = set(config.get("bound", ()))
    filters = [f"sendcmd=f={config['sendcmd']}"] if bound else []
    eq = {key: config[key] for key in ("brightness", "contrast", "saturation", "gamma")}
    if eq != {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "gamma": 1.0} or bound & set(eq):
        filters.append(f"eq{BOUND_NAME}=" + ":".join(f"{key}={value:.6g}" for key, value in eq.items()))
    if config["hue"] or "hue" in bound:
        filters.append(f"hue{BOUND_NAME}=h={config['hue']:.6g}")
    if config["blur"] or "blur" in bound:
        filters += [RGB, f"gblur{BOUND_NAME}=sigma={config['blur']:.6g}:steps=3"]
    if config["sharpen"]:
        filters.append(f"unsharp=5:5:{config['sharpen']:.6g}:5:5:0")
    return filters


def _tempo_factors(speed: float) -> list[float]:
    """atempo takes 0.5 to 100: slower speeds are a product of halvings and a remainder."""
    factors = []
    while speed < 0.5:
        factors.append(0.5)
        speed /= 0.5
    return [*factors, speed]


def segment(graph: Graph, av: Av, config: Mapping[str, Any]) -> Av:
    """SEGMENT: frames [start * fps, end * fps) rounded half up; audio cut at the same instants."""
    start_s, end_s = config["start"], config["end"]
    if av.video is None:
        return _audio_segment(graph, av, start_s, end_s)
    if av.still:
        raise MediaError("SEGMENT cuts clips, not still images")
    first = frame_at(start_s, av.fps)
    last = min(av.frames, frame_at(end_s, av.fps)) if end_s else av.frames
    if first >= av.frames:
        raise MediaError(f"SEGMENT starts at {start_s} s, but the input is {av.duration_s:.3f} s long")
    if last <= first:
        raise MediaError(f"SEGMENT from {start_s} s to {end_s} s holds no whole frame at {av.fps} fps")
    video = graph.filter(av.video, f"trim=start_frame={first}:end_frame={last},setpts=PTS-STARTPTS")
    cut = av.with_(video=video, frames=last - first)
    if av.audio is None:
        return cut
    first_sample = round(first * av.sample_rate / av.fps)
    audio = graph.filter(
        av.audio,
        f"atrim=start_sample={first_sample},asetpts=PTS-STARTPTS,{_audio_length(cut, av.sample_rate)}",
    )
    return cut.with_(audio=audio, samples=_samples_for(cut, av.sample_rate))


def _audio_segment(graph: Graph, av: Av, start_s: float, end_s: float) -> Av:
    first = round(start_s * av.sample_rate)
    last = min(av.samples, round(end_s * av.sample_rate)) if end_s else av.samples
    if first >= av.samples:
        raise MediaError(f"SEGMENT starts at {start_s} s, but the input is {av.duration_s:.3f} s long")
    if last <= first:
        raise MediaError(f"SEGMENT from {start_s} s to {end_s} s holds no sound")
    bounds = f"start_sample={first}" + (f":end_sample={last}" if end_s else "")
    audio = graph.filter(str(av.audio), f"atrim={bounds},asetpts=PTS-STARTPTS")
    return av.with_(audio=audio, samples=last - first)


def frame_at(seconds: float, fps: Fraction) -> int:
    """The frame shown at ``seconds``, rounding half up (0.5 s at 25 fps: frame 13)."""
    return math.floor(Fraction(seconds) * fps + Fraction(1, 2))


def _timeline(first: Av, second: Av, what: str) -> Av:
    """The input whose length the result takes: the first clip (a still image has none)."""
    _needs_video(first, what)
    _needs_video(second, what)
    if first.still and second.still:
        raise MediaError(f"{what} of two still images is an image step, not a video one")
    return second if first.still else first


def _trim_to(graph: Graph, video: str, timeline: Av) -> str:
    return graph.filter(video, f"trim=end_frame={timeline.frames}")


def layer(graph: Graph, base: Av, over: Av, config: Mapping[str, Any]) -> Av:
    """LAYER: ``over`` scaled by ``scale`` at (x, y) on ``base`` with ``opacity``."""
    timeline = _timeline(base, over, "LAYER")
    upper = graph.filter(_needs_video(over, "LAYER"), "format=gbrap")
    if config["scale"] != 1.0:
        width = max(1, round(over.width * config["scale"]))
        height = max(1, round(over.height * config["scale"]))
        upper = graph.filter(upper, f"scale={width}:{height}:flags={SCALE_FLAGS['lanczos']}")
    if config["opacity"] != 1.0:
        upper = graph.filter(upper, f"colorchannelmixer=aa={config['opacity']:.6g}")
    lower = graph.filter(_needs_video(base, "LAYER"), RGB)
    placed = graph.join(
        [lower, upper], f"overlay=x={config['x']}:y={config['y']}:format=gbrp:eof_action=pass"
    )
    return _combined(graph, base, over, timeline, placed)


def blend(graph: Graph, base: Av, other: Av, config: Mapping[str, Any]) -> Av:
    """BLEND: ``other`` resized to ``base``'s size, blended by ``mode`` with ``opacity``."""
    timeline = _timeline(base, other, "BLEND")
    lower = graph.filter(_needs_video(base, "BLEND"), RGB)
    upper = graph.filter(
        _needs_video(other, "BLEND"), f"{RGB},scale={base.width}:{base.height}:flags={SCALE_FLAGS['lanczos']}"
    )
    mode = FFMPEG_BLEND_MODES.get(config["mode"], config["mode"])
    blended = graph.join([lower, upper], f"blend=all_mode={mode}:all_opacity={config['opacity']:.6g}")
    return _combined(graph, base, other, timeline, blended)


def _combined(graph: Graph, first: Av, second: Av, timeline: Av, video: str) -> Av:
    audio_from = first if first.audio is not None else second
    audio = audio_from.audio
    if audio is not None:
        audio = graph.filter(audio, _audio_length(timeline, audio_from.sample_rate))
    return timeline.with_(
        video=_trim_to(graph, video, timeline),
        audio=audio,
        width=first.width,
        height=first.height,
        sample_rate=audio_from.sample_rate,
        samples=_samples_for(timeline, audio_from.sample_rate),
        still=False,
        rgb=True,
    )


def _samples_for(clip: Av, sample_rate: int) -> int:
    return round(clip.frames * sample_rate / clip.fps)


def _audio_length(clip: Av, sample_rate: int) -> str:
    """Pad with silence or cut, so the sound lasts exactly as long as ``clip``'s picture."""
    return _exact_samples(_samples_for(clip, sample_rate))


def _exact_samples(samples: int) -> str:
    """Exactly ``samples`` samples: padded with silence, or cut."""
    return f"apad=whole_len={samples},atrim=end_sample={samples}"


def sequence(graph: Graph, first: Av, second: Av, config: Mapping[str, Any]) -> Av:
    """SEQUENCE of two clips (the planner makes longer ones a tree of these): ``second`` after
    ``first``, both at one size, frame rate and sample rate, with an optional crossfade."""
    if (first.video is None) != (second.video is None) or first.still or second.still:
        raise MediaError("SEQUENCE joins clips of one kind: all video, or all audio")
    if first.video is None:
        return _audio_sequence(graph, first, second, config)
    width = config["width"] or first.width
    height = config["height"] or first.height
    fps = Fraction(config["fps"]).limit_denominator(1001) if config["fps"] else first.fps
    rates = [clip.sample_rate for clip in (first, second) if clip.audio is not None]
    sample_rate = config["sample_rate"] or (rates[0] if rates else 0)
    clips = [
        _normalized(graph, clip, width=width, height=height, fps=fps, sample_rate=sample_rate)
        for clip in (first, second)
    ]
    overlap = frame_at(config["crossfade"], fps)
    if overlap >= min(clip.frames for clip in clips):
        raise MediaError(f"a crossfade of {config['crossfade']} s is as long as a clip or longer")
    frames = clips[0].frames + clips[1].frames - overlap
    result = clips[0].with_(frames=frames, samples=round(frames * sample_rate / fps) if sample_rate else 0)
    if not overlap:
        return _concat(graph, clips, result)
    seconds = overlap / fps
    offset = (clips[0].frames - overlap) / fps
    video = graph.join(
        [str(clips[0].video), str(clips[1].video)],
        f"xfade=transition=fade:duration={float(seconds):.6f}:offset={float(offset):.6f}",
    )
    if not sample_rate:
        return result.with_(video=video, audio=None)
    fade_samples = round(overlap * sample_rate / fps)
    audio = graph.join([str(clips[0].audio), str(clips[1].audio)], f"acrossfade=ns={fade_samples}")
    return result.with_(video=video, audio=audio)


def _concat(graph: Graph, clips: list[Av], result: Av) -> Av:
    """Clips end to end (the concat filter: streams interleaved clip by clip)."""
    streams = [label for clip in clips for label in (clip.video, clip.audio) if label is not None]
    if clips[0].audio is None:
        return result.with_(video=graph.join(streams, "concat=n=2:v=1:a=0"), audio=None)
    video, audio = graph.label(), graph.label()
    joined = "".join(f"[{label}]" for label in streams)
    graph.fragment(f"{joined}concat=n=2:v=1:a=1[{video}][{audio}]")
    return result.with_(video=video, audio=audio)


def _normalized(graph: Graph, clip: Av, *, width: int, height: int, fps: Fraction, sample_rate: int) -> Av:
    video = graph.filter(
        str(clip.video),
        f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags={SCALE_FLAGS['lanczos']},"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps},{RGB}",
    )
    frames = math.floor(clip.frames * fps / clip.fps + Fraction(1, 2))
    if fps != clip.fps:  # the fps filter's own rounding must not decide the length
        video = graph.exact_frames(video, frames)
    normal = clip.with_(video=video, width=width, height=height, fps=fps, frames=frames, rgb=True)
    if not sample_rate:
        return normal.with_(audio=None)
    length = _audio_length(normal, sample_rate)
    if clip.audio is None:
        silence = graph.label()
        graph.fragment(f"anullsrc=r={sample_rate}:cl=stereo,{length}[{silence}]")
        return normal.with_(audio=silence, sample_rate=sample_rate)
    audio = graph.filter(clip.audio, f"aresample={sample_rate},aformat=channel_layouts=stereo,{length}")
    return normal.with_(audio=audio, sample_rate=sample_rate)


def _audio_sequence(graph: Graph, first: Av, second: Av, config: Mapping[str, Any]) -> Av:
    sample_rate = config["sample_rate"] or first.sample_rate
    clips = [
        graph.filter(str(clip.audio), f"aresample={sample_rate},aformat=channel_layouts=stereo")
        for clip in (first, second)
    ]
    fade = round(config["crossfade"] * sample_rate)
    samples = [round(clip.samples * sample_rate / clip.sample_rate) for clip in (first, second)]
    if fade and fade >= min(samples):
        raise MediaError(f"a crossfade of {config['crossfade']} s is as long as a clip or longer")
    joined = graph.join(clips, f"acrossfade=ns={fade}" if fade else "concat=n=2:v=0:a=1")
    return first.with_(audio=joined, sample_rate=sample_rate, samples=sum(samples) - fade)


def mux(graph: Graph, inputs: list[Av], config: Mapping[str, Any]) -> Av:
    """MUX: the picture of input ``video`` with the sound of input ``audio``."""
    picture_from, sound_from = (_pick(inputs, config[key], key) for key in ("video", "audio"))
    if picture_from.video is None or picture_from.still:
        raise MediaError(f"MUX: input {config['video'] + 1} has no video stream")
    if sound_from.audio is None:
        raise MediaError(f"MUX: input {config['audio'] + 1} has no audio stream")
    clip = picture_from
    if config["length"] == "shortest":
        audio_frames = math.floor(sound_from.samples * clip.fps / sound_from.sample_rate)
        if audio_frames == 0:
            raise MediaError(f"MUX: the sound of input {config['audio'] + 1} is shorter than one frame")
        if audio_frames < clip.frames:
            clip = clip.with_(video=_trim_to(graph, str(clip.video), clip.with_(frames=audio_frames)))
            clip = clip.with_(frames=audio_frames)
    audio = graph.filter(sound_from.audio, _audio_length(clip, sound_from.sample_rate))
    return clip.with_(
        audio=audio,
        sample_rate=sound_from.sample_rate,
        samples=_samples_for(clip, sound_from.sample_rate),
    )


def _pick(inputs: list[Av], index: int, key: str) -> Av:
    if index >= len(inputs):
        raise MediaError(f"MUX: {key} names input {index + 1}, but there are {len(inputs)}")
    return inputs[index]


def audio_mix(graph: Graph, inputs: list[Av], config: Mapping[str, Any]) -> Av:
    """AUDIO_MIX: the inputs' sound, each with its gain in dB, summed; optionally normalized."""
    with_sound = [av for av in inputs if av.audio is not None]
    if len(with_sound) != len(inputs):
        missing = next(index for index, av in enumerate(inputs) if av.audio is None)
        raise MediaError(f"AUDIO_MIX: input {missing + 1} has no audio stream")
    sample_rate = inputs[0].sample_rate or DEFAULT_SAMPLE_RATE
    gains = config["gains"] or [0.0] * len(inputs)
    if len(gains) != len(inputs):
        raise MediaError(f"AUDIO_MIX has {len(inputs)} inputs but {len(gains)} gains")
    levelled = [
        graph.filter(
            str(av.audio), f"aresample={sample_rate},aformat=channel_layouts=stereo,volume={gain:.6g}dB"
        )
        for av, gain in zip(inputs, gains, strict=True)
    ]
    mixed = graph.join(levelled, f"amix=inputs={len(inputs)}:duration={config['duration']}:normalize=0")
    if config["normalize"] == "loudness":
        mixed = graph.filter(
            mixed, f"loudnorm=I=-16:TP=-1.5:LRA=11,aresample={sample_rate},aformat=channel_layouts=stereo"
        )
    lengths = [round(av.samples * sample_rate / av.sample_rate) for av in inputs]
    pick = {"longest": max, "shortest": min}.get(config["duration"])
    samples = pick(lengths) if pick else lengths[0]
    return Av(video=None, audio=mixed, sample_rate=sample_rate, samples=samples)
