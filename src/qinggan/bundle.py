"""Model bundles: a directory that fully describes one servable classifier.

A bundle holds one or more ONNX graphs (``fp32``, ``int8``), a Hugging Face
``tokenizer.json`` and a manifest, ``qinggan.json``, with label names in output order,
display names, limits, provenance and the sha256 of every file. :func:`load_bundle`
checks all of it and raises :class:`~qinggan.errors.BundleError` naming the problem.

An *ensemble* bundle has no graph of its own: its manifest lists ``members`` (bundle
directories relative to it, each with a weight) whose probabilities are averaged.

Built-in bundles live in ``qinggan/models/<name>/`` and are picked by name
(:func:`resolve_model`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BundleError
from .settings import env_model, env_name

MANIFEST_NAME = "qinggan.json"
FORMAT_VERSION = 1
VARIANTS = ("int8", "fp32")
BUILTIN_DIR = Path(__file__).parent / "models"
DEFAULT_BUILTIN = "accurate"
MODEL_ENV = env_name("model")  # read by settings.env_model

# Canonical sentiment labels and their Chinese display names.
DISPLAY_NAMES = {"Negative": "负面", "Positive": "正面", "Neutral": "中性"}


@dataclass(frozen=True)
class Manifest:
    """What ``qinggan.json`` says about a bundle."""

    name: str
    labels: tuple[str, ...]
    display_labels: tuple[str, ...]
    max_length: int
    models: dict[str, str]
    files: dict[str, str]
    tokenizer: str = "tokenizer.json"
    default_variant: str = ""
    text_prefix: str = ""
    temperature: float = 1.0
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    source: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    members: tuple[dict[str, Any], ...] = ()
    # optional for ensembles: {"member": i, "confidence": c} -- member i alone answers the
    # texts it is at least c confident about; the others get the whole ensemble
    gate: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        problems = []
        if len(self.labels) < 2:
            problems.append("needs at least two labels")
        if len(self.display_labels) != len(self.labels):
            problems.append(
                f"has {len(self.labels)} labels but {len(self.display_labels)} display labels"
            )
        if len(set(self.labels)) != len(self.labels):
            problems.append("has duplicate label names")
        if not self.models and not self.members:
            problems.append("lists no ONNX model and no ensemble members")
        if self.models and self.members:
            problems.append("has both its own models and ensemble members")
        for member in self.members:
            if not isinstance(member, dict) or not isinstance(member.get("path"), str):
                problems.append("each ensemble member needs a 'path'")
            elif (
                not isinstance(member.get("weight", 1.0), (int, float))
                or not member.get("weight", 1.0) > 0
            ):
                problems.append(f"member {member['path']!r} needs a positive weight")
        if self.gate:
            index, confidence = self.gate.get("member"), self.gate.get("confidence")
            if not self.members:
                problems.append("has a gate but no ensemble members")
            elif not isinstance(index, int) or not 0 <= index < len(self.members):
                problems.append(f"gate member must index the members, got {index!r}")
            if not isinstance(confidence, (int, float)) or not 0 < confidence <= 1:
                problems.append(f"gate confidence must be in (0, 1], got {confidence!r}")
        unknown = set(self.models) - set(VARIANTS)
        if unknown:
            problems.append(f"has unknown model variants {sorted(unknown)} (known: {VARIANTS})")
        if self.default_variant and self.default_variant not in self.models:
            problems.append(f"default_variant {self.default_variant!r} is not among its models")
        if not isinstance(self.max_length, int) or self.max_length < 2:
            problems.append(f"max_length must be an integer >= 2, got {self.max_length!r}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature!r}")
        if self.format_version > FORMAT_VERSION:
            problems.append(
                f"format_version {self.format_version} is newer than this qinggan "
                f"understands ({FORMAT_VERSION}); upgrade qinggan"
            )
        if problems:
            raise BundleError(f"invalid manifest: {'; '.join(problems)}")

    @property
    def preferred_variant(self) -> str:
        """The variant loaded by default: the manifest's choice, else int8, else fp32."""
        if self.members:
            return "ensemble"
        if self.default_variant:
            return self.default_variant
        return next(v for v in VARIANTS if v in self.models)

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["display_labels"] = list(self.display_labels)
        data["inputs"] = list(self.inputs)
        data["members"] = list(self.members)
        if not self.members:
            del data["members"]
        if not self.gate:
            del data["gate"]
        return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = set(cls.__dataclass_fields__)
        required = {"name", "labels", "display_labels", "max_length", "models", "files"}
        missing = sorted(required - set(data))
        if missing:
            raise BundleError(f"invalid manifest: missing field(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("labels", "display_labels", "inputs"):
            if key in kwargs:
                if not isinstance(kwargs[key], list) or not all(
                    isinstance(x, str) for x in kwargs[key]
                ):
                    raise BundleError(f"invalid manifest: {key} must be a list of strings")
                kwargs[key] = tuple(kwargs[key])
        if "members" in kwargs:
            if not isinstance(kwargs["members"], list):
                raise BundleError("invalid manifest: members must be a list")
            kwargs["members"] = tuple(kwargs["members"])
        if not isinstance(kwargs.get("gate", {}), dict):
            raise BundleError("invalid manifest: gate must be an object")
        for key in ("models", "files"):
            if not isinstance(kwargs[key], dict):
                raise BundleError(f"invalid manifest: {key} must be an object")
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong value types reaching __post_init__ comparisons
            raise BundleError(f"invalid manifest: {exc}") from None


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk."""

    path: Path
    manifest: Manifest
    members: tuple[Bundle, ...] = ()  # an ensemble's member bundles, loaded and verified

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def tokenizer_path(self) -> Path:
        return self.path / self.manifest.tokenizer

    def model_path(self, variant: str | None = None) -> Path:
        variant = variant or self.manifest.preferred_variant
        if variant not in self.manifest.models:
            raise BundleError(
                f"bundle {self.name!r} has no {variant!r} model "
                f"(it has: {', '.join(sorted(self.manifest.models))})"
            )
        return self.path / self.manifest.models[variant]

    def files_for(self, variant: str | None = None) -> tuple[str, ...]:
        """The files (relative paths) that serving ``variant`` reads: tokenizer and graph."""
        if self.manifest.members:
            return tuple(f"{m['path']}/{MANIFEST_NAME}" for m in self.manifest.members)
        variant = variant or self.manifest.preferred_variant
        self.model_path(variant)  # names the variants on a typo
        return (self.manifest.tokenizer, self.manifest.models[variant])

    def verify(self, files: Iterable[str] | None = None) -> None:
        """Check ``files`` (default: every file the manifest lists) against their sha256."""
        listed = self.manifest.files
        for rel in listed if files is None else files:
            file = self.path / rel
            if not file.is_file():
                raise BundleError(f"bundle {self.name!r} is missing file {rel}")
            actual = sha256_file(file)
            if actual != listed[rel]:
                raise BundleError(
                    f"bundle {self.name!r}: checksum mismatch for {rel} "
                    f"(expected {listed[rel][:12]}…, found {actual[:12]}…); the file is "
                    "corrupt or was modified"
                )

    def sha256(self, variant: str | None = None) -> str:
        """The model's identity: its graph's sha256, or for an ensemble its manifest's."""
        if self.manifest.members:
            return sha256_file(self.path / MANIFEST_NAME)
        variant = variant or self.manifest.preferred_variant
        return self.manifest.files[self.manifest.models[variant]]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def builtin_models() -> dict[str, Path]:
    """Names and paths of the bundles shipped inside the package."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(BUILTIN_DIR.iterdir())
        if p.is_dir() and (p / MANIFEST_NAME).is_file()
    }


def resolve_model(model: str | os.PathLike[str] | None = None) -> Path:
    """Turn a model spec into a bundle directory.

    ``None`` means ``$QINGGAN_MODEL`` or else the default built-in model; a built-in name
    (``accurate``, ``balanced``, ``fast``, ``ngram``) picks that bundle; anything else is
    a path.
    """
    if model is None or str(model) == "":
        model = env_model()
    builtins = builtin_models()
    if model is None:
        if DEFAULT_BUILTIN in builtins:
            return builtins[DEFAULT_BUILTIN]
        if builtins:
            return next(iter(builtins.values()))
        raise BundleError(
            "no built-in model is installed in this copy of qinggan; pass --model PATH "
            "to a bundle made by 'qinggan convert'"
        )
    spec = str(model)
    if spec in builtins:
        return builtins[spec]
    path = Path(spec).expanduser()
    if not path.exists():
        names = ", ".join(builtins) or "none installed"
        raise BundleError(f"model {spec!r} is neither a directory nor a built-in model ({names})")
    return path


def load_bundle(
    path: str | os.PathLike[str], *, verify: bool = True, _member: bool = False
) -> Bundle:
    """Read and validate the bundle at ``path``.

    With ``verify`` (the default) every file listed in the manifest must exist and
    match its sha256. ``verify=False`` checks structure only; the engine then verifies
    just the files of the variant it runs (:meth:`Bundle.verify`), while ONNX Runtime
    builds the session.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle {str(root)!r} is not a directory")
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"bundle {str(root)!r} has no {MANIFEST_NAME}")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{manifest_path} must hold a JSON object")
    manifest = Manifest.from_dict(data)
    if _member and manifest.members:
        raise BundleError(f"bundle {manifest.name!r}: an ensemble member cannot be an ensemble")

    if manifest.members:
        needed = [f"{m['path']}/{MANIFEST_NAME}" for m in manifest.members]
    else:
        needed = [manifest.tokenizer, *manifest.models.values()]
    unlisted = [f for f in needed if f not in manifest.files]
    if unlisted:
        raise BundleError(f"bundle {manifest.name!r}: no checksum listed for {', '.join(unlisted)}")
    for rel in needed:
        if not (root / rel).is_file():
            raise BundleError(f"bundle {manifest.name!r} is missing file {rel}")
    members = tuple(  # each member checks its own files
        load_bundle(root / member["path"], verify=verify, _member=True)
        for member in manifest.members
    )
    bundle = Bundle(path=root, manifest=manifest, members=members)
    if verify:
        bundle.verify()
    return bundle


def write_bundle(
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    labels: list[str] | tuple[str, ...],
    models: dict[str, str],
    max_length: int,
    display_labels: list[str] | tuple[str, ...] | None = None,
    tokenizer: str = "tokenizer.json",
    extra_files: list[str] | tuple[str, ...] = (),
    **fields: Any,
) -> Bundle:
    """Write ``qinggan.json`` for files already placed in ``out_dir`` and return the bundle.

    ``models`` maps variant (``fp32``/``int8``) to a path relative to ``out_dir``; an
    ensemble passes ``models={}`` and ``members=[{"path": ..., "weight": ...}, ...]``.
    Checksums are computed here; ``fields`` fill the other :class:`Manifest` fields.
    """
    root = Path(out_dir)
    if display_labels is None:
        display_labels = [DISPLAY_NAMES.get(label, label) for label in labels]
    members = fields.get("members", ())
    if members:
        listed = [*(f"{m['path']}/{MANIFEST_NAME}" for m in members), *extra_files]
    else:
        listed = [tokenizer, *models.values(), *extra_files]
    for rel in listed:
        if not (root / rel).is_file():
            raise BundleError(f"cannot write bundle: {root / rel} does not exist")
    manifest = Manifest(
        name=name,
        labels=tuple(labels),
        display_labels=tuple(display_labels),
        max_length=max_length,
        models=dict(models),
        files={rel: sha256_file(root / rel) for rel in listed},
        tokenizer=tokenizer,
        **fields,
    )
    (root / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return load_bundle(root)


def rewrite_manifest(
    bundle_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    **changes: Any,
) -> Bundle:
    """Write ``bundle_dir``'s manifest again with ``changes`` to its fields (e.g. ``metrics``,
    ``parity``, ``models``), in place or into ``out_dir`` (whose files must already be
    there); every other field is kept and checksums are recomputed, so a file that changed
    since the manifest was written (e.g. a re-quantised graph) is listed as it is now."""
    m = load_bundle(bundle_dir, verify=False).manifest
    own = (
        [f"{member['path']}/{MANIFEST_NAME}" for member in m.members]
        if m.members
        else [m.tokenizer, *m.models.values()]
    )
    fields = {k: v for k, v in asdict(m).items() if k != "files"}
    fields["extra_files"] = [f for f in m.files if f not in own]
    fields.update(changes)
    return write_bundle(out_dir if out_dir is not None else bundle_dir, **fields)
