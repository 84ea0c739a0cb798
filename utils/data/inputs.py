"""What to denoise: find the inputs in a folder and load them as spectrogram views.

Three kinds of input folder (or a single file) are recognised:

* a BSD split: ``Images/*.png`` with optional ``Masks/``, ``Raw_audios/``,
  ``Clean_audios/`` (synthetic data) and ``Denoised_audios/``; a BSD root holding
  split folders is read at its ``split`` (``test`` by default);
* a plain folder of spectrogram PNGs in the BSD format (a recording with the same
  stem beside an image is used as its raw audio);
* a folder of recordings (wav/flac/ogg/mp3, any length, any bit depth, any number
  of channels), each channel turned into a BSD spectrogram with
  :func:`utils.audio.stft` and segmented on its own: views ``NAME`` (mono),
  ``NAME_left``/``NAME_right`` (stereo, as BSD names its images), ``NAME_ch1`` ...
  (three or more channels); the denoised file keeps every channel.

A :class:`Source` is one input file; loading it gives one :class:`View` per
spectrogram to segment (one per channel of a recording). Anything that cannot be
loaded raises ``ValueError`` naming the file (the callers skip it and count it);
problems that leave the image usable become the view's ``warnings``: its recording
is missing, unreadable, silent or of a length that does not fit the image (the
image is still segmented, without audio), or its mask holds values other than 0
and 255 (nonzero is foreground, the dataset's own convention). Files found but not
used (a mask without an image, a recording beside spectrograms, a second file of
the same name) are the :class:`Discovery`'s ``problems``. A ground-truth mask of
another size than its image, or one that cannot be read, makes the image unusable.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils.audio import align, bsd, conventions, kernel
from utils.audio import io as audio_io
from utils.audio.level import level_gain
from utils.audio.stream import recording_info, resampled_length
from utils.data.bsd_layout import (
    CLEAN_AUDIO_DIR,
    DENOISED_AUDIO_DIR,
    IMAGES_DIR,
    MASKS_DIR,
    RAW_AUDIO_DIR,
    SPLIT_FOLDERS,
    split_dir,
)
from utils.data.image_io import read_gray_png, read_mask_png

IMAGE = "image"
RECORDING = "recording"


# The dataset's reference denoised files may carry this suffix (XC41136_denoised.wav).
DENOISED_SUFFIX = "_denoised"


@dataclass(frozen=True)
class Source:
    """One input file: a spectrogram image (with where to look for its other files),
    or a recording."""

    name: str  # output stem: the image's or the recording's
    kind: str  # IMAGE or RECORDING
    path: Path
    mask_dir: Path | None = None
    raw_dir: Path | None = None
    clean_dir: Path | None = None
    denoised_dir: Path | None = None
    audio_expected: bool = False  # a missing raw recording is worth a warning


@dataclass
class View:
    """One spectrogram to segment, with what is known about it.

    ``image`` is uint8 ``(1024, T)``; ``mask`` bool ``(1024, T)`` or None; ``audio``
    the raw signal the image shows or None (for a BSD image the ``num_samples(T)``
    samples it shows, as the dataset cuts them; for a recording all of it);
    ``reference`` the clean signal to score the denoised audio against (same
    length) and ``reference_kind`` where it came from (``"clean"`` or ``"denoised"``).
    """

    name: str
    image: np.ndarray
    mask: np.ndarray | None = None
    audio: np.ndarray | None = None
    sr: int | None = None
    reference: np.ndarray | None = None
    reference_kind: str | None = None
    spectrum: np.ndarray | None = None  # stft_planes(audio), kept when it was computed anyway
    warnings: list[str] = field(default_factory=list)
    recorded_sr: int | None = None  # a recording's own rate, when it was resampled to ``sr``

    @property
    def seconds(self) -> float:
        """Duration of the audio the view covers (0 without audio)."""
        return 0.0 if self.audio is None or not self.sr else len(self.audio) / self.sr


@dataclass
class Discovery:
    """The sources found under an input path, what kind of input it is, and problems."""

    root: Path
    layout: str  # "bsd split", "spectrogram folder", "recordings"
    sources: list[Source]
    problems: list[str] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        return any(s.mask_dir is not None for s in self.sources)


def _files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def _optional_dir(root: Path, name: str) -> Path | None:
    return root / name if (root / name).is_dir() else None


def _bsd_split(root: Path) -> Discovery:
    images = _files(root / IMAGES_DIR, (".png",))
    if not images:
        raise ValueError(f"{root / IMAGES_DIR}: holds no PNG images")
    mask_dir = _optional_dir(root, MASKS_DIR)
    problems = []
    if mask_dir is not None:
        image_names = {p.name for p in images}
        mask_names = {p.name for p in _files(mask_dir, (".png",))}
        orphans = sorted(mask_names - image_names)
        if orphans:
            problems.append(
                f"{mask_dir}: {len(orphans)} masks without an image, not used: {orphans[:3]}"
            )
        unmasked = sorted(image_names - mask_names)
        if unmasked:
            problems.append(
                f"{mask_dir}: no mask for {len(unmasked)} images, their mask scores are left "
                f"empty: {unmasked[:3]}"
            )
    sources = [
        Source(
            p.stem,
            IMAGE,
            p,
            mask_dir=mask_dir if mask_dir and (mask_dir / p.name).is_file() else None,
            raw_dir=_optional_dir(root, RAW_AUDIO_DIR),
            audio_expected=(root / RAW_AUDIO_DIR).is_dir(),
            clean_dir=_optional_dir(root, CLEAN_AUDIO_DIR),
            denoised_dir=_optional_dir(root, DENOISED_AUDIO_DIR),
        )
        for p in images
    ]
    return Discovery(root, "bsd split", sources, problems)


def discover(path: str | Path, split: str = "test") -> Discovery:
    """Find what to denoise under ``path`` (a folder or one file), see the module docstring.

    Raises:
        ValueError: naming the path, when it does not exist or holds nothing usable.
    """
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".png":
            return Discovery(path.parent, "spectrogram folder", [_plain_image(path)])
        if suffix in audio_io.AUDIO_EXTENSIONS:
            return Discovery(path.parent, "recordings", [Source(path.stem, RECORDING, path)])
        raise ValueError(
            f"{path}: neither a spectrogram PNG nor a recording "
            f"({', '.join(audio_io.AUDIO_EXTENSIONS)})"
        )
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or folder")
    if (path / IMAGES_DIR).is_dir():
        return _bsd_split(path)
    if any((path / name).is_dir() for names in SPLIT_FOLDERS.values() for name in names):
        return _bsd_split(split_dir(path, split))
    images = _files(path, (".png",))
    recordings = _files(path, audio_io.AUDIO_EXTENSIONS)
    if images:
        used = {audio_io.audio_source_for_image(p.name)[0] for p in images}
        unused = [p.name for p in recordings if p.stem not in used]
        problems = [
            f"{path}: {len(unused)} recordings without a spectrogram of their name are not "
            f"denoised (the folder is read as spectrograms): {unused[:3]}"
        ] if unused else []  # fmt: skip
        return Discovery(path, "spectrogram folder", [_plain_image(p) for p in images], problems)
    if recordings:
        sources, problems = _unique_names([Source(p.stem, RECORDING, p) for p in recordings])
        return Discovery(path, "recordings", sources, problems)
    raise ValueError(
        f"{path}: found no BSD split ({IMAGES_DIR}/), spectrogram PNGs or recordings "
        f"({', '.join(audio_io.AUDIO_EXTENSIONS)})"
    )


def source_frames(source: Source, sample_rate: int | None = None) -> int:
    """About how many STFT frames (image columns) a source has, from its header alone: the
    work it takes. A recording is counted at ``sample_rate`` when given; a file whose
    header cannot be read counts 0 (it is skipped later, with its reason)."""
    try:
        if source.kind == RECORDING:
            info = recording_info(source.path)
            samples = resampled_length(info.samples, info.sr, sample_rate or info.sr)
            return conventions.num_frames(samples)
        with open(source.path, "rb") as handle:
            header = handle.read(24)  # PNG: signature, IHDR length and type, width, height
        return int.from_bytes(header[16:20], "big") if header[12:16] == b"IHDR" else 0
    except (ValueError, OSError):
        return 0


def _plain_image(path: Path) -> Source:
    return Source(path.stem, IMAGE, path, raw_dir=path.parent)


def _unique_names(sources: list[Source]) -> tuple[list[Source], list[str]]:
    """The sources whose name no earlier one has (its outputs would overwrite theirs), and
    a problem for each of the others."""
    kept: dict[str, Source] = {}
    problems = []
    for source in sources:
        if source.name in kept:
            problems.append(
                f"{source.path}: not read, {kept[source.name].path.name} has the same name "
                "and its outputs would be overwritten"
            )
        else:
            kept[source.name] = source
    return list(kept.values()), problems


@dataclass(frozen=True)
class LoadOptions:
    """How views are made from their files.

    ``sample_rate``: a recording is resampled to it first when given (a model's
    training rate: the same call then lands on the same rows); a BSD image is used as
    it is, at its recording's own rate, as the data set does. ``normalize_level``: each
    view's image is made from its audio scaled by :func:`level_gain` (a BSD image with
    its recording too: the recordings' path on BSD-layout data); the audio itself is
    left as it is.
    """

    sample_rate: int | None = None
    normalize_level: bool = False


AS_STORED = LoadOptions()  # recordings at their own rate and level, images as they are


def load_views(source: Source, options: LoadOptions = AS_STORED) -> list[View]:
    """The spectrogram views of a source (one for an image, one per channel of a recording),
    made as ``options`` say.

    Raises:
        ValueError: naming the file, when the image or recording cannot be used.
    """
    if source.kind == RECORDING:
        return _recording_views(source, options)
    view = _image_view(source)
    if options.normalize_level:
        _normalize_level(view)
    return [view]


def _normalize_level(view: View) -> None:
    """Remake the view's image from its audio at the normalised level (not without audio)."""
    if view.audio is None:
        return
    if view.spectrum is None:
        view.spectrum = kernel.stft_planes(view.audio)
    view.image = _spectrogram_image(view.spectrum, view.sr, normalize_level=True)


def _spectrogram_image(planes: np.ndarray, sr: int, normalize_level: bool) -> np.ndarray:
    """The BSD image of STFT planes, at the normalised level if asked (:func:`level_gain`)."""
    return bsd.planes_to_image(planes, level_gain(planes, sr) if normalize_level else 1.0)


def load_or_skip(
    source: Source, skipped: list[str], warnings: list[str], options: LoadOptions = AS_STORED
) -> list[View]:
    """:func:`load_views`, for a run that goes on past a bad file: when ``source`` cannot
    be loaded the reason is appended to ``skipped`` and no view is returned; the views'
    warnings are appended to ``warnings``. Each is printed to stderr as well."""
    try:
        views = load_views(source, options)
    except ValueError as err:
        skipped.append(str(err))
        print(f"warning: skipped: {err}", file=sys.stderr)
        return []
    for warning in (warning for view in views for warning in view.warnings):
        warnings.append(warning)
        print(f"warning: {warning}", file=sys.stderr)
    return views


def channel_names(name: str, n_channels: int) -> list[str]:
    """View names of a recording's channels: ``NAME`` (mono), ``NAME_left``/``NAME_right``
    (stereo, as BSD names its images), or ``NAME_ch1`` ... for more channels."""
    if n_channels == 1:
        return [name]
    if n_channels == 2:
        return [f"{name}{suffix}" for suffix in audio_io.CHANNEL_SUFFIXES]
    return [f"{name}_ch{c + 1}" for c in range(n_channels)]


def _recording_views(source: Source, options: LoadOptions) -> list[View]:
    signals, recorded_sr = audio_io.load_audio_channels(source.path)
    sr = options.sample_rate or recorded_sr
    signals = audio_io.resample(signals, recorded_sr, sr)
    if conventions.num_frames(signals.shape[1]) == 0:
        raise ValueError(
            f"{source.path}: {signals.shape[1]} samples is shorter than one STFT window "
            f"({conventions.WINDOW_LENGTH})"
        )
    views = []
    for name, y in zip(channel_names(source.name, len(signals)), signals, strict=True):
        planes = kernel.stft_planes(y)
        image = _spectrogram_image(planes, sr, options.normalize_level)
        resampled_from = recorded_sr if recorded_sr != sr else None
        views.append(View(name, image, audio=y, sr=sr, spectrum=planes, recorded_sr=resampled_from))
        _note_silence(views[-1], source.path)
    return views


def _note_silence(view: View, path: Path) -> None:
    """Warn that the view's audio is all zeros: its audio scores are undefined."""
    if not np.any(view.audio):
        view.warnings.append(
            f"{path}: the audio of {view.name} is silent (all zeros); its audio scores are "
            "left empty"
        )


def _image_view(source: Source) -> View:
    image = read_gray_png(source.path)
    if image.shape[0] != conventions.N_FFT:
        raise ValueError(
            f"{source.path}: a BSD spectrogram is {conventions.N_FFT} pixels high, this one "
            f"{image.shape[0]}"
        )
    view = View(source.name, image)
    if source.mask_dir is not None:
        mask_path = source.mask_dir / source.path.name
        mask = read_mask_png(mask_path, view.warnings)
        if mask.shape != image.shape:
            raise ValueError(
                f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        view.mask = mask
    if source.raw_dir is not None:
        _attach_audio(view, source)
    return view


def _attach_audio(view: View, source: Source) -> None:
    """Add the raw audio the image shows and a reference to score against, if found."""
    stem, channel = audio_io.audio_source_for_image(source.path.name)
    raw_path = audio_io.find_audio_file(source.raw_dir, stem)
    if raw_path is None:
        if source.audio_expected:
            view.warnings.append(f"{source.raw_dir / stem}.*: no raw recording for {view.name}")
        return
    try:
        view.audio, view.sr, offset = align.raw_audio_segment(
            source.raw_dir, source.path.name, view.image
        )
    except ValueError as err:
        view.warnings.append(f"{err}; {view.name} is segmented without audio")
        return
    _note_silence(view, raw_path)
    clean = source.clean_dir and audio_io.find_audio_file(source.clean_dir, stem)
    if clean:
        try:
            y, _ = audio_io.load_audio(clean, channel)
            view.reference = conventions.fit_length(y[offset:], len(view.audio))
            view.reference_kind = "clean"
            return
        except ValueError as err:
            view.warnings.append(str(err))
    reference = source.denoised_dir and (
        audio_io.find_audio_file(source.denoised_dir, view.name)
        or audio_io.find_audio_file(source.denoised_dir, view.name + DENOISED_SUFFIX)
    )
    if reference:
        try:
            y, _ = audio_io.load_audio(reference)
            view.reference = conventions.fit_length(y, len(view.audio))
            view.reference_kind = "denoised"
        except ValueError as err:
            view.warnings.append(str(err))
