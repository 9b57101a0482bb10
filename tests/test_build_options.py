"""The ``convert`` and ``train`` commands match the dataclasses that declare their options:
same flags, defaults, help text and allowed values (the dataclass is the one source)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from qinggan.build_options import ConvertOptions, TrainConfig
from qinggan.cli import app
from qinggan.options import choices_of, help_of

# fields a caller of the Python API may set but the command does not offer
LIBRARY_ONLY = {
    ConvertOptions: set(),
    TrainConfig: {"sources", "export_max_len", "warmup", "weight_decay", "dropout", "extra"},
}
# fields the command offers under another meaning: --labels and --parity-texts take text
# (comma-separated names, a file), --train-embeddings is the negation of freeze_embeddings
TRANSLATED = {"labels", "parity_texts", "freeze_embeddings"}


def _params(command: str) -> dict[str, Any]:
    group = get_command(app)
    return {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("command", "cls"), [("convert", ConvertOptions), ("train", TrainConfig)])
def test_command_options_match_their_dataclass(command: str, cls: type) -> None:
    params = _params(command)
    for f in dataclasses.fields(cls):
        if f.name in LIBRARY_ONLY[cls]:
            assert f.name not in params, f.name
            continue
        assert help_of(cls, f.name), f"{cls.__name__}.{f.name} has no help"
        if f.name in TRANSLATED:
            continue
        param = params[f.name]
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert flag in param.opts, (f.name, param.opts)
        assert param.help == help_of(cls, f.name), f.name
        if f.default is not dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert param.default == f.default, f.name
        choices = choices_of(cls, f.name)
        declared = getattr(param, "type_descriptor", None) or getattr(param, "type", None)
        assert tuple(getattr(declared, "choices", None) or ()) == (choices or ()), f.name


@pytest.mark.parametrize("command", ["convert", "train"])
def test_every_option_has_help(command: str) -> None:
    for name, param in _params(command).items():
        if getattr(param, "hidden", False) or param.param_type_name == "argument":
            continue
        assert param.help, f"{command} {name} has no help"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "d", "--out", "o", "--preset", "huge"],
        ["convert", "src", "out", "--layout", "tf"],
        ["convert", "src", "out", "--int8-weights", "s4"],
    ],
)
def test_a_bad_choice_exits_2_listing_the_allowed_values(argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2
    assert "is not one of" in result.output


@pytest.mark.parametrize("flag", ["--max-length", "--max-len"])
def test_train_max_length_and_its_old_spelling(flag: str, monkeypatch) -> None:
    pytest.importorskip("torch", reason="the train command needs the 'train' extra")
    import qinggan.train.loop as loop

    seen: list[TrainConfig] = []
    monkeypatch.setattr(loop, "train", seen.append)
    result = CliRunner().invoke(app, ["train", "--data", "d", "--out", "o", flag, "64"])
    assert result.exit_code == 0, result.output
    assert seen[0].max_len == 64 and seen[0].data_dir == "d" and seen[0].freeze_embeddings


def test_build_options_and_the_commands_import_no_torch() -> None:
    code = (
        "import sys, qinggan.build_options, qinggan.onnx_tools, qinggan.cli; "
        "bad = [m for m in ('torch', 'onnx', 'qinggan.train', 'qinggan.convert') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_convert_options_refuse_an_unknown_int8_weight_type_up_front() -> None:
    from qinggan.errors import QingganError

    with pytest.raises(QingganError, match="int8_weights must be one of u8, s8"):
        ConvertOptions(int8_weights="s4")


def test_train_config_resolves_the_preset() -> None:
    cfg = TrainConfig(data_dir="d", out_dir="o", preset="accurate").resolved()
    assert (cfg.layers, cfg.lr, cfg.name) == (12, 5e-5, "accurate")
    assert TrainConfig(data_dir="d", out_dir="o", layers=2, lr=0.1).resolved().layers == 2
