"""Integrity of saved models: every file's sha256, the outputs' meaning and the audio reading.

A probe bundle and a fine-tuned model folder end with ``integrity.json``, written
last: the sha256 and size of every other file under the folder (whatever the
savers put there, so new files are covered without code here knowing them),
what each output column means (class order, label set, layers, pooling), how
the training audio was read (channel per corpus, model input rate, condition,
telephone source) and a digest over all of that. :func:`verify` refuses, in one
line naming the file, a folder whose files or record disagree: an edited,
truncated, swapped, missing or extra file. The digest guards against accidents
and careless edits, not against someone who rewrites ``integrity.json`` with
the digests of edited files: it is a checksum, not a signature.

A folder is saved whole into a temporary sibling and renamed into place
(:func:`fresh_folder`), so stale files of an earlier save never end up sealed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_ser.errors import ConfigError
from ssl_ser.manifest import DOWNMIX

INTEGRITY_FILE = "integrity.json"
FORMAT = "ssl-ser-saved-model"
VERSION = 1
KINDS: tuple[str, ...] = ("probe", "finetuned")
# Files whose presence marks a folder saved before integrity records existed.
LEGACY_MARKERS: dict[str, str] = {"bundle.json": "probe", "finetune.json": "finetuned"}
REMAKE: dict[str, str] = {
    "probe": "export it again (`ser export --cache ... --manifest ... --output FOLDER`, or "
    "`ser classify --save-probe FOLDER`)",
    "finetuned": "train it again (`ser finetune ... --force` saves a sealed model folder)",
}


@dataclass(frozen=True)
class Seal:
    """What ``integrity.json`` records about a saved model folder."""

    kind: str
    files: dict[str, dict[str, Any]]
    outputs: dict[str, Any]
    audio: dict[str, Any]

    def content(self) -> dict[str, Any]:
        """The JSON content, without its own digest."""
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _digest(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _listing(folder: Path) -> list[str]:
    """Relative POSIX paths of everything under `folder` but the record (links included)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        relative = path.relative_to(folder).as_posix()
        if relative != INTEGRITY_FILE:
            found.append(relative)
    return found


def seal(
    folder: str | Path, kind: str, outputs: Mapping[str, Any], audio: Mapping[str, Any]
) -> Seal:
    """Write ``integrity.json`` over every file now in `folder`; call it after the last save.

    Raises:
        ConfigError: an unknown kind, or a link in the folder (savers never write one).
    """
    if kind not in KINDS:
        raise ConfigError(f"saved-model kind {kind!r} is not one of {', '.join(KINDS)}")
    folder = Path(folder)
    files = {}
    for name in _listing(folder):
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise ConfigError(f"{path} is not a regular file; a saved model holds files only")
        files[name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    record = Seal(kind, files, json.loads(json.dumps(outputs)), json.loads(json.dumps(audio)))
    content = record.content()
    text = json.dumps({**content, "digest": _digest(content)}, indent=1, sort_keys=True)
    temporary = folder / f".{INTEGRITY_FILE}.{os.getpid()}.tmp"
    temporary.write_text(text)
    os.replace(temporary, folder / INTEGRITY_FILE)
    return record


def verify(folder: str | Path) -> Seal:
    """The seal of `folder` once every file matches it; else one line naming the file.

    Raises:
        ConfigError: no record (a folder saved before records existed, or not a
            saved model), a damaged record, or a file edited, truncated,
            swapped, missing or extra.
    """
    folder = Path(folder)
    record = read_record(folder)
    present = set(_listing(folder))
    listed = record.files
    for name in sorted(present - set(listed)):
        raise ConfigError(
            f"{folder / name} is not part of the saved model ({INTEGRITY_FILE} does not list "
            "it): added or left there after saving; remove it or save the model again"
        )
    for name, expected in sorted(listed.items()):
        _check_file(folder, name, expected)
    return record


def read_record(folder: str | Path) -> Seal:
    """The record of `folder` as written (its own digest checked, the files not)."""
    folder = Path(folder)
    path = folder / INTEGRITY_FILE
    if not path.is_file():
        raise ConfigError(_missing_record(folder))
    try:
        content = json.loads(path.read_text())
        digest = content.pop("digest")
        record = Seal(content["kind"], content["files"], content["outputs"], content["audio"])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"{path} is damaged ({type(error).__name__}: {error}); the saved model cannot be "
            "checked, so it is refused"
        ) from error
    if (content.get("format"), content.get("version")) != (FORMAT, VERSION) or not isinstance(
        record.files, dict
    ):
        raise ConfigError(f"{path} is not an ssl-ser integrity record of version {VERSION}")
    if digest != _digest(record.content()) or record.kind not in KINDS:
        raise ConfigError(
            f"{path} was edited after saving (its own digest does not match its content)"
        )
    return record


def _missing_record(folder: Path) -> str:
    for marker, kind in LEGACY_MARKERS.items():
        if (folder / marker).is_file():
            return (
                f"{folder} has no {INTEGRITY_FILE}: it was saved by an ssl-ser without integrity "
                "records (or the record was removed), so an edit of its class order, layers or "
                f"weights could not be detected; refused. To use it, {REMAKE[kind]}"
            )
    return (
        f"{folder} is not a saved model: expected a probe bundle (`ser classify --save-probe`, "
        "`ser export`: a folder with bundle.json) or a fine-tuned model folder from "
        "`ser finetune` (OUTPUT/models/<cell id>/, with finetune.json and head.safetensors)"
    )


def _check_file(folder: Path, name: str, expected: Mapping[str, Any]) -> None:
    path = folder / name
    if path.is_symlink():
        raise ConfigError(f"{path} is a link; a saved model holds files only")
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing ({INTEGRITY_FILE} lists it): the saved model is incomplete"
        )
    size = path.stat().st_size
    if size != expected.get("bytes"):
        raise ConfigError(
            f"{path} has {size} bytes, but {expected.get('bytes')} were saved: truncated or "
            "replaced; refused"
        )
    if file_sha256(path) != expected.get("sha256"):
        raise ConfigError(
            f"{path} differs from the file that was saved (sha256 mismatch): edited or swapped; "
            "refused"
        )


@contextlib.contextmanager
def loading(path: Path) -> Iterator[None]:
    """Turn a library's failure to load a verified file into one line naming it.

    Reached only by a folder whose record was rewritten over damaged files (or a
    library that cannot read its own file): still an error, never a traceback.
    """
    try:
        yield
    except ConfigError:
        raise
    except Exception as error:  # safetensors, skops, xgboost and torch raise their own types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(
            f"{path} cannot be loaded ({type(error).__name__}: {reason[:200]}); refused"
        ) from error


def check_outputs(
    record: Seal, described: Mapping[str, Any], path: Path, required: Sequence[str] = ()
) -> None:
    """Refuse a description (`path`'s content) whose output meaning differs from the record's.

    Fields in `required` must be in the description; others are compared where present.
    """
    for field in required:
        if field in record.outputs and field not in described:
            raise ConfigError(f"{path} lacks {field!r}, which the model was saved with; refused")
    for field, value in sorted(record.outputs.items()):
        if field in described and json.loads(json.dumps(described[field])) != value:
            raise ConfigError(
                f"{path} says {field} {described[field]!r}, but the model was saved with "
                f"{field} {value!r}; refused"
            )


@contextlib.contextmanager
def fresh_folder(folder: str | Path) -> Iterator[Path]:
    """A temporary sibling to save into; it replaces `folder` whole when the block succeeds.

    An existing `folder` must be empty or a saved model (it is replaced, stale
    files and all); any other folder is refused, so a save never deletes work.

    Raises:
        ConfigError: `folder` is a file, or a folder holding other things.
    """
    folder = Path(folder)
    check_replaceable(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.saving")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(temporary, folder)
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable(folder: str | Path, results: str | Path | None = None) -> None:
    """Refuse, before any work, a folder a model cannot be saved into (see :func:`fresh_folder`).

    Raises:
        ConfigError: `folder` is a file, a folder holding other things, or the
            `results` folder itself.
    """
    folder = Path(folder)
    if results is not None and folder.resolve() == Path(results).resolve():
        raise ConfigError(
            f"{folder} is also the results folder; save the model into a folder of its own"
        )
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ConfigError(f"{folder} exists and is not a folder; give a folder to save the model")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    markers = (INTEGRITY_FILE, *LEGACY_MARKERS)
    if not any((folder / marker).is_file() for marker in markers):
        raise ConfigError(
            f"{folder} holds files that are not a saved model; saving there would replace "
            "them: choose a new or empty folder"
        )


def audio_reading(
    rows: Any, condition: str, telephone_source: str, sample_rate: int | str
) -> dict[str, Any]:
    """How the training rows' audio was read: channels (per corpus), rate, condition.

    `rows` is a manifest-like table (``corpus`` and optionally ``channel``);
    rows without a channel were downmixed (-1), as :func:`ssl_ser.audio.load_utterance`
    reads them.
    """
    channels = rows.get("channel")
    by_corpus: dict[str, set[int]] = {}
    for i, corpus in enumerate(rows["corpus"]):
        value = DOWNMIX if channels is None else _channel(channels.iloc[i])
        by_corpus.setdefault(str(corpus), set()).add(value)
    return {
        "channels": {corpus: sorted(values) for corpus, values in sorted(by_corpus.items())},
        "sample_rate": sample_rate,
        "condition": condition,
        "telephone_source": telephone_source if condition == "telephone" else None,
    }


def model_rate(preprocessor: Any) -> int | str:
    """The rate a model's preprocessor reads audio at, as a seal records it (Hz, or ``native``)."""
    return "native" if preprocessor.native_rate else int(preprocessor.sample_rate)


def _channel(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DOWNMIX
    return DOWNMIX if number != number else int(number)


def reading_channel(reading: Mapping[str, Any]) -> int | None:
    """The channel new files are read with: the one training used, None when training mixed them."""
    values = {v for values in reading.get("channels", {}).values() for v in values}
    if len(values) == 1:
        return int(values.pop())
    return DOWNMIX if not values else None


def describe_channels(reading: Mapping[str, Any]) -> str:
    """Per corpus, how its channels were read (for messages)."""
    parts = []
    for corpus, values in reading.get("channels", {}).items():
        read = ["downmixed" if v == DOWNMIX else f"channel {v}" for v in values]
        parts.append(f"{corpus}: {' and '.join(read)}")
    return "; ".join(parts)
