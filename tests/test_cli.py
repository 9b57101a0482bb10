"""The command line: predictions, stdin streaming, info, and one-line errors with exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qinggan.bundle import Bundle


def run_cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "qinggan.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_predict_texts(tiny_bundle: Bundle) -> None:
    res = run_cli(
        "predict", "-m", str(tiny_bundle.path), "这家酒店服务很好，下次还来", "太差了，非常失望"
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("Positive\t") and lines[0].endswith("这家酒店服务很好，下次还来")
    assert lines[1].startswith("Negative\t")


def test_predict_json(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "--json", "-m", str(tiny_bundle.path), "很好")
    row = json.loads(res.stdout)
    assert row["text"] == "很好" and row["label"] == "Positive" and row["label_zh"] == "正面"


def test_predict_stdin_json_lines(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "-m", str(tiny_bundle.path), stdin="很好\n\n太差\n")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r.get("label") for r in rows] == ["Positive", None, "Negative"]
    assert rows[1]["error"] == "empty text"


def test_model_from_env(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "很好", env={"QINGGAN_MODEL": str(tiny_bundle.path)})
    assert res.returncode == 0 and res.stdout.startswith("Positive")


def test_missing_model_is_one_line_error(tmp_path: Path) -> None:
    res = run_cli("predict", "-m", str(tmp_path / "nope"), "很好")
    assert res.returncode == 1
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_too_long_with_no_truncate(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "--no-truncate", "-m", str(tiny_bundle.path), "好" * 200)
    assert res.returncode == 1 and "tokens" in res.stderr and "Traceback" not in res.stderr


def test_bad_option_exits_2(tiny_bundle: Bundle) -> None:
    res = run_cli("predict", "--threads", "0", "-m", str(tiny_bundle.path), "x")
    assert res.returncode == 2


def test_info(tiny_bundle: Bundle) -> None:
    res = run_cli("info", str(tiny_bundle.path))
    assert res.returncode == 0
    assert "tiny-test" in res.stdout and "Positive (正面)" in res.stdout
    res = run_cli("info", "--json", str(tiny_bundle.path))
    assert json.loads(res.stdout)["labels"] == ["Negative", "Positive"]


def test_info_lists_an_ensembles_members() -> None:
    from qinggan.bundle import builtin_models, load_bundle

    m = load_bundle(builtin_models()["accurate"], verify=False).manifest
    res = run_cli("info", "accurate")
    assert res.returncode == 0, res.stderr
    (a, b) = m.members
    line = f"members:     {a['path']} × {a['weight']}, {b['path']} × {b['weight']}; temperature"
    assert f"{line} {m.temperature}" in res.stdout and "variants:" not in res.stdout
    assert "gate:" not in res.stdout  # accurate runs every member on every text


def test_info_shows_a_cascades_gate() -> None:
    from qinggan.bundle import builtin_models, load_bundle

    m = load_bundle(builtin_models()["fast"], verify=False).manifest
    res = run_cli("info", "fast")
    assert res.returncode == 0, res.stderr
    first = m.members[m.gate["member"]]["path"]
    assert f"gate:        {first} answers alone when >= {m.gate['confidence']:.0%} sure" in (
        res.stdout
    )


def test_help_lists_commands() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    for command in ("predict", "info"):
        assert command in res.stdout


@pytest.mark.parametrize("argv", [["predict", "-m", "{bundle}", "很好"], ["info", "{bundle}"]])
def test_serving_commands_do_not_import_torch(tiny_bundle: Bundle, argv: list[str]) -> None:
    """Run the real CLI with torch and transformers made unimportable: it must still work."""
    argv = [a.format(bundle=tiny_bundle.path) for a in argv]
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            raise ImportError(f'blocked import of {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['qinggan', *{argv!r}]\n"
        "runpy.run_module('qinggan.cli', run_name='__main__')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr


def test_info_takes_the_model_as_an_option_or_an_argument(tiny_bundle: Bundle) -> None:
    by_option = run_cli("info", "-m", str(tiny_bundle.path))
    by_argument = run_cli("info", str(tiny_bundle.path))
    assert by_option.returncode == 0, by_option.stderr
    assert "tiny-test" in by_option.stdout and by_option.stdout == by_argument.stdout
    both = run_cli("info", "-m", str(tiny_bundle.path), str(tiny_bundle.path))
    assert both.returncode == 2


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["predict", "--engine", "nope", "x"], ["local", "ray"]),
        (["predict", "--variant", "nope", "x"], ["int8", "fp32"]),
        (["serve", "--log-level", "nope"], ["critical", "debug", "trace"]),
        (["serve", "--variant", "nope"], ["int8", "fp32"]),
        (["eval", "--baseline", "nope", "m", "d.csv"], ["snownlp"]),
    ],
)
def test_a_bad_choice_is_a_usage_error_listing_the_choices(
    argv: list[str], allowed: list[str]
) -> None:
    from typer.testing import CliRunner

    from qinggan.cli import app

    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert all(value in res.output for value in allowed), res.output


def test_version() -> None:
    import qinggan

    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"qinggan {qinggan.__version__}"


def test_every_option_of_the_serving_commands_has_help() -> None:
    import typer

    from qinggan.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("predict", "info", "eval", "serve"):
        for param in commands[name].params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.opts} has no help"
        model = next(p for p in commands[name].params if p.name == "model")
        assert "-m" in model.opts and "--model" in model.opts, name


def test_serve_flags_are_the_settings_fields() -> None:
    """serve's options come from Settings' metadata: one flag per field, its help, its flag
    name where it differs, and no default typed into the command."""
    import dataclasses

    import typer

    from qinggan.cli import app
    from qinggan.options import flag_of, help_of
    from qinggan.settings import Settings

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    params = {p.name: p for p in serve.params if p.param_type_name == "option"}
    assert set(params) - {"help"} == {f.name for f in dataclasses.fields(Settings)}
    assert flag_of(Settings, "request_timeout_s") == "--request-timeout"
    for name, param in params.items():
        if name == "help":
            continue
        assert flag_of(Settings, name) in param.opts, name
        assert param.help is not None and param.help.startswith(help_of(Settings, name)), name
        assert param.default is None, name  # unset flags leave env vars and defaults to Settings
