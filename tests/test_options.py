"""Config keys declared once (gradcheck_cli/options.py): the loader and the generated JSON Schema
give the same verdict on every value; the CLI options, the schema and `init`'s template follow
the Config fields; output formats come from the reporters registry."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import typer
import yaml
from typer.testing import CliRunner

from gradcheck_cli import cli, reporters, run_options
from gradcheck_cli.config import (
    OPTIONS,
    Config,
    ConfigError,
    apply_overrides,
    config_schema,
    load_config,
)
from gradcheck_cli.errors import CommandError
from gradcheck_cli.init_config import WRITTEN_HERE
from gradcheck_cli.options import Count, option, options, schema, template_lines

VALIDATOR = jsonschema.Draft202012Validator(config_schema())


def _loader_accepts(path: Path, text: str) -> bool:
    path.write_text(text)
    try:
        load_config(str(path))
    except ConfigError:
        return False
    return True


# (the file's text, accepted). The first four rows are the disagreements issue 12 lists: each was
# accepted by one of the two and refused by the other.
YAML_CASES = [
    ("zero_atol: '1e-6'", True),
    ("steps: '10'", True),
    ("stop_after: '3'", True),
    ("steps: 10.0", True),
    ("zero_atol: 1e-6", True),  # a string to YAML 1.1
    ("zero_atol: 0", True),
    ("zero_atol: '0.5'", True),
    ("zero_atol: -1", False),
    ("zero_atol: '-1'", False),
    ("zero_atol: ' 1e-6'", False),
    ("zero_atol: tiny", False),
    ("zero_atol: .inf", False),
    ("zero_atol: true", False),
    ("steps: all", True),
    ("steps: ALL", False),
    ("steps: 10.5", False),
    ("steps: 0", False),
    ("steps: '0'", False),
    ("steps: '007'", True),
    ("steps: '1.0'", False),
    ("steps: true", False),
    ("steps:", True),  # null takes the default
    ("stop_after: 1.5", False),
    ("stop_after: 3.0", True),
    ("stop_after: all", False),
    ("fail_on: warning", True),
    ("fail_on: Error", False),
    ("expect: model.*", True),
    ("expect: [a, 3]", False),
    ("expect: ''", False),
    ("expect: 3", False),
    ("ignore: [GC120, detach]", True),
    ("ignore: [gc120]", False),
    ("script: train.py", True),
    ("script: ''", False),
    ("script: 3", False),
    ("stpes: 3", False),
]


@pytest.mark.parametrize(("text", "accepted"), YAML_CASES)
def test_loader_and_schema_agree_on_yaml(tmp_path: Path, text: str, accepted: bool) -> None:
    data = yaml.safe_load(text)
    assert VALIDATOR.is_valid(data) is accepted, "schema"
    assert _loader_accepts(tmp_path / "gradcheck.yaml", text + "\n") is accepted, "loader"


TOML_CASES = [
    ("steps = 10.0", True),
    ('steps = "10"', True),
    ('stop_after = "3"', True),
    ('zero_atol = "1e-6"', True),
    ("zero_atol = 1e-6", True),
    ("zero_atol = inf", False),
    ("steps = 2.5", False),
]


@pytest.mark.parametrize(("text", "accepted"), TOML_CASES)
def test_loader_and_schema_agree_on_toml(tmp_path: Path, text: str, accepted: bool) -> None:
    import tomllib

    document = f"[tool.gradcheck]\n{text}\n"
    data = tomllib.loads(document)["tool"]["gradcheck"]
    assert VALIDATOR.is_valid(data) is accepted, "schema"
    assert _loader_accepts(tmp_path / "pyproject.toml", document) is accepted, "loader"


def test_nan_is_the_one_value_only_the_loader_refuses(tmp_path: Path) -> None:
    # JSON has no NaN, so a JSON Schema cannot speak of it (options.py says so).
    assert math.isnan(yaml.safe_load("zero_atol: .nan")["zero_atol"])
    assert not _loader_accepts(tmp_path / "gradcheck.yaml", "zero_atol: .nan\n")


def test_values_are_converted_as_the_schema_reads_them(tmp_path: Path) -> None:
    (tmp_path / "gradcheck.yaml").write_text("steps: 10.0\nstop_after: '3'\nzero_atol: '1e-6'\n")
    config = load_config(str(tmp_path / "gradcheck.yaml"))
    assert (config.steps, config.stop_after, config.zero_atol) == (10, 3, 1e-6)
    assert isinstance(config.steps, int) and isinstance(config.stop_after, int)


def test_command_line_values_go_through_the_same_check() -> None:
    # Typer hands every table-made option over as text; the file's check reads it.
    config = apply_overrides(Config(), stop_after="3", zero_atol="1e-6", steps="all")
    assert (config.stop_after, config.zero_atol, config.steps) == (3, 1e-6, "all")
    with pytest.raises(ConfigError) as caught:
        apply_overrides(Config(), stop_after="0")
    assert caught.value.message == "--stop-after: 'stop_after' must be a positive integer, not '0'"
    with pytest.raises(ConfigError) as caught:
        apply_overrides(Config(), zero_atol="inf")
    assert caught.value.message == "--zero-atol: 'zero_atol' must be a number >= 0, not 'inf'"


# -- one place per key ---------------------------------------------------------------------------


@dataclass
class _WithPatience(Config):
    patience: int | None = option(
        Count(),
        None,
        title="Patience",
        doc="Give up after N calls.",
        help="Give up after N calls.",
        template="give up after N calls",
        example=3,
    )


def test_a_key_declared_once_reaches_schema_template_and_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = options(_WithPatience)
    assert list(table)[-1] == "patience"
    generated = schema(table, {})
    assert generated["properties"]["patience"]["title"] == "Patience"
    validator = jsonschema.Draft202012Validator(generated)
    assert validator.is_valid({"patience": 2}) and not validator.is_valid({"patience": 0})
    assert "# patience: 3" in "\n".join(template_lines(table, skip=()))
    monkeypatch.setattr(run_options, "OPTIONS", table)
    seen: dict[str, object] = {}

    def probe(**values: object) -> None:
        seen.update(values)

    app = typer.Typer()
    app.command()(run_options.with_table_options(probe))
    result = CliRunner().invoke(app, ["--patience", "4", "--expect", "a", "--json", "r.json"])
    assert result.exit_code == 0, result.output
    overrides, paths = run_options.split_values(seen)
    assert (overrides["patience"], overrides["expect"], paths["json"]) == ("4", ["a"], "r.json")
    assert table["patience"].coerce(overrides["patience"]) == 4
    # An option not given keeps the file's value, also when it comes as an empty list.
    assert run_options.split_values({"expect": [], "json_path": None})[0]["expect"] is None


def test_run_has_one_option_per_key_and_report_file() -> None:
    command = typer.main.get_command(cli.app).commands["run"]
    flags = {opt for p in command.params for opt in p.opts}
    for o in OPTIONS.values():
        assert (o.flag in flags) is (o.help is not None), o.key
    for r in reporters.FILE_REPORTERS.values():
        assert r.flag in flags
    takes_value = cli._value_options(typer.main.get_command(cli.app), "run")
    assert {"--steps", "--expect", "--json", "--sarif", "--html", "--config"} <= takes_value
    assert "--quiet" not in takes_value and "--exit-zero" not in takes_value


def test_module_args_split_after_any_value_option() -> None:
    command = typer.main.get_command(cli.app)
    split = cli._split_module_args
    argv = ["run", "--zero-atol", "1e-6", "--html", "r.html", "-m", "pkg.train", "--lr", "3"]
    assert split(argv, command) == [*argv[:7], "--", "--lr", "3"]
    argv = ["init", "-o", "cfg.yaml", "-m", "pkg.train", "--lr", "3"]  # -o takes a value
    assert split(argv, command) == [*argv[:5], "--", "--lr", "3"]


def test_notebook_magic_takes_the_same_config_options() -> None:
    from gradcheck_cli.magic import parse_options

    parsed = parse_options(
        "--stop-after 2 --expect a --expect 'b.*' --zero-atol 1e-6 --json r.json"
    )
    assert (parsed["stop_after"], parsed["expect"], parsed["zero_atol"]) == (
        "2",
        ["a", "b.*"],
        "1e-6",
    )
    assert parsed["json_path"] == "r.json"
    assert {k for k, o in OPTIONS.items() if o.help} <= set(parsed)
    config = apply_overrides(Config(), **{k: parsed[k] for k in OPTIONS if k in parsed})
    assert (config.stop_after, config.expect, config.zero_atol) == (2, ["a", "b.*"], 1e-6)


def test_init_template_lists_every_other_key_with_its_default() -> None:
    lines = template_lines(OPTIONS, skip=WRITTEN_HERE)
    listed = {line.lstrip("# ").split(":")[0] for line in lines}
    assert listed | set(WRITTEN_HERE) == set(OPTIONS)
    assert yaml.safe_load("\n".join(lines)) == {
        k: getattr(Config(), k) for k in OPTIONS if k not in WRITTEN_HERE and k != "stop_after"
    }  # stop_after: its default (null) is written commented out, with an example


# -- reporters -----------------------------------------------------------------------------------


def test_a_registered_file_reporter_is_checked_and_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        reporters.FILE_REPORTERS, "txt", reporters.FileReporter("txt", "text", "builtins:repr")
    )
    (tmp_path / "dir").mkdir()
    with pytest.raises(CommandError) as caught:
        reporters.check_paths({"txt": str(tmp_path / "dir")})
    assert caught.value.message.startswith(f"--txt {tmp_path / 'dir'}: cannot write the report")
    assert reporters.write_reports(["r"], {"txt": str(tmp_path / "r.txt"), "json": None}) == []
    assert (tmp_path / "r.txt").read_text() == "['r']"


def test_format_chosen_by_name_or_by_github_actions() -> None:
    assert reporters.choose_format(None, {}).name == "console"
    assert reporters.choose_format(None, {"GITHUB_ACTIONS": "true"}).name == "github"
    assert reporters.choose_format("console", {"GITHUB_ACTIONS": "true"}).name == "console"
    with pytest.raises(CommandError) as caught:
        reporters.choose_format("xml", {})
    assert caught.value.message == "--format must be 'console' or 'github', not 'xml'"
    stream = io.StringIO()
    reporters.FORMATS["console"].emit(object(), {}, stream)
    assert stream.getvalue() == ""
