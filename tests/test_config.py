"""The config file: parsing and defaults, discovery, CLI overrides, error messages, name matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gradcheck_cli.config import (
    DEFAULT_STEPS,
    KEYS,
    OPTIONS,
    Config,
    ConfigError,
    apply_overrides,
    config_schema,
    load_config,
    match_names,
    unmatched_error,
)
from gradcheck_cli.errors import CommandError
from gradcheck_cli.rules import RULES

PYPROJECT_HEAD = '[project]\nname = "demo"\n\n[tool.gradcheck]\n'


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory with no GRADCHECK_CONFIG in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRADCHECK_CONFIG", raising=False)
    return tmp_path


def load_yaml(here: Path, text: str) -> Config:
    (here / "gradcheck.yaml").write_text(text)
    return load_config()


def yaml_error(here: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_yaml(here, text)
    assert caught.value.exit_code == 2
    return caught.value.message


def pyproject_error(here: Path, text: str) -> str:
    (here / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config()
    return caught.value.message


# -- keys and defaults ---------------------------------------------------------------------------


def test_defaults(here: Path) -> None:
    config = load_config()
    assert config == Config()
    assert config.source is None
    assert config.to_dict() == {
        "expect": [],
        "allow_none": [],
        "allow_zero": [],
        "frozen": [],
        "steps": DEFAULT_STEPS,
        "stop_after": None,
        "zero_atol": 0.0,
        "fail_on": "error",
        "ignore": [],
        "script": None,
    }


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("expect: [model.encoder.*, w]", "expect", ["model.encoder.*", "w"]),
        ("expect: model.encoder.*", "expect", ["model.encoder.*"]),  # a lone string is wrapped
        ("allow_none:\n  - model.head.bias\n", "allow_none", ["model.head.bias"]),
        ("allow_zero: ['model.blocks[0].weight']", "allow_zero", ["model.blocks[0].weight"]),
        ("allow_zero:\n  - model.blocks[0].weight\n", "allow_zero", ["model.blocks[0].weight"]),
        ("frozen: [backbone.*]", "frozen", ["backbone.*"]),
        ("steps: 10", "steps", 10),
        ("steps: all", "steps", "all"),
        ("steps: '3'", "steps", 3),
        ("stop_after: 5", "stop_after", 5),
        ("zero_atol: 0.001", "zero_atol", 0.001),
        ("zero_atol: 0", "zero_atol", 0.0),
        ("zero_atol: 1e-6", "zero_atol", 1e-6),  # a string to YAML 1.1, a number to the user
        ("fail_on: warning", "fail_on", "warning"),
        ("fail_on: never", "fail_on", "never"),
        ("ignore: [unused_parameter, GC301]", "ignore", ["unused_parameter", "GC301"]),
        ("ignore: GC120", "ignore", ["GC120"]),
        ("expect:", "expect", []),  # null takes the default
        ("steps: null", "steps", DEFAULT_STEPS),
        ("stop_after: ~", "stop_after", None),
    ],
)
def test_each_key(here: Path, text: str, key: str, value: Any) -> None:
    config = load_yaml(here, text + "\n")
    assert getattr(config, key) == value
    assert config.to_dict()[key] == value
    others = {k: v for k, v in config.to_dict().items() if k != key}
    assert others == {k: v for k, v in Config().to_dict().items() if k != key}


def test_empty_and_comment_only_files_are_empty_configs(here: Path) -> None:
    assert load_yaml(here, "") == Config()
    config = load_yaml(here, "# nothing yet\n")
    assert config == Config()
    assert config.source == "gradcheck.yaml"


def test_positions_and_source(here: Path) -> None:
    config = load_yaml(here, "steps: 3\nexpect:\n  - a\n  - b\n  - model.encdr.*\nignore: GC120\n")
    assert config.source == "gradcheck.yaml"
    assert config.positions["steps"] == (1, 8)
    assert config.positions["expect[0]"] == (3, 5)
    assert config.positions["expect[2]"] == (5, 5)
    assert config.positions["ignore[0]"] == (6, 9)
    assert config.where("expect[2]") == "gradcheck.yaml:5:5"
    assert "source" not in config.to_dict()
    assert "positions" not in config.to_dict()


def test_to_dict_keys_and_engine_methods() -> None:
    config = Config(steps=2, ignore=["GC120", "detach"])
    assert list(config.to_dict()) == list(KEYS)
    assert [config.in_check_window(i) for i in range(3)] == [True, True, False]
    assert Config().in_check_window(DEFAULT_STEPS - 1) and not Config().in_check_window(
        DEFAULT_STEPS
    )
    assert Config(steps="all").in_check_window(10_000)
    assert config.ignores("unused_parameter")  # by rule id
    assert config.ignores("detach")  # by kind
    assert not config.ignores("no_grad")


def test_yaml_merge_keys_work_as_in_safe_load(here: Path) -> None:
    config = load_yaml(here, "expect: &names [a, b]\nfrozen: *names\n")
    assert config.frozen == ["a", "b"]


# -- discovery -----------------------------------------------------------------------------------


def _write_all(root: Path) -> None:
    (root / "explicit.yaml").write_text("steps: 1\n")
    (root / "from_env.yaml").write_text("steps: 2\n")
    (root / "gradcheck.yaml").write_text("steps: 3\n")
    (root / ".gradcheck.yaml").write_text("steps: 4\n")
    (root / "pyproject.toml").write_text(PYPROJECT_HEAD + "steps = 5\n")


def test_discovery_order(tmp_path: Path) -> None:
    _write_all(tmp_path)
    env = {"GRADCHECK_CONFIG": "from_env.yaml"}
    assert load_config("explicit.yaml", cwd=str(tmp_path), environ=env).steps == 1
    assert load_config(cwd=str(tmp_path), environ=env).steps == 2
    assert load_config(cwd=str(tmp_path), environ={}).steps == 3
    (tmp_path / "gradcheck.yaml").unlink()
    assert load_config(cwd=str(tmp_path), environ={}).steps == 4
    (tmp_path / ".gradcheck.yaml").unlink()
    config = load_config(cwd=str(tmp_path), environ={})
    assert config.steps == 5
    assert config.source == str(tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").unlink()
    assert load_config(cwd=str(tmp_path), environ={}) == Config()


def test_empty_env_variable_is_unset(tmp_path: Path) -> None:
    _write_all(tmp_path)
    assert load_config(cwd=str(tmp_path), environ={"GRADCHECK_CONFIG": ""}).steps == 3


def test_pyproject_without_table_or_broken_elsewhere_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n[tool.ruff]\nline-length = 1\n'
    )
    assert load_config(cwd=str(tmp_path), environ={}) == Config()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = \n")
    assert load_config(cwd=str(tmp_path), environ={}) == Config()


def test_explicit_pyproject_path(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text(PYPROJECT_HEAD + 'fail_on = "never"\n')
    config = load_config("sub/pyproject.toml", cwd=str(tmp_path), environ={})
    assert config.fail_on == "never"


def test_missing_explicit_file(here: Path) -> None:
    (here / "gradcheck.yaml").write_text("steps: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config("nope.yaml")
    assert caught.value.message == "config file not found: nope.yaml"
    assert isinstance(caught.value, CommandError)


def test_missing_env_file(here: Path) -> None:
    (here / "gradcheck.yaml").write_text("steps: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"GRADCHECK_CONFIG": "gone.yaml"})
    assert caught.value.message == "config file not found: gone.yaml (from $GRADCHECK_CONFIG)"


def test_message_paths_are_shown_relative_to_the_working_directory(here: Path) -> None:
    (here / "gradcheck.yaml").write_text("stps: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(cwd=str(here))
    assert caught.value.message == "gradcheck.yaml:1:1: unknown key 'stps' (did you mean 'steps'?)"


# -- command-line overrides ----------------------------------------------------------------------


def test_cli_values_win_over_the_file(here: Path) -> None:
    config = load_yaml(here, "steps: 3\nfail_on: never\nexpect: [a, b]\n")
    merged = apply_overrides(config, steps=7, fail_on=None, expect="c", zero_atol=None)
    assert merged.steps == 7
    assert merged.fail_on == "never"  # None: not given on the command line
    assert merged.expect == ["c"]
    assert merged.source == "gradcheck.yaml"
    assert "expect[0]" not in merged.positions  # no longer from the file
    assert "steps" not in merged.positions
    assert merged.positions["fail_on"] == (2, 10)
    assert config.steps == 3  # the original is untouched


def test_cli_values_are_validated(here: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(Config(), steps="ten")
    assert caught.value.message == "--steps: 'steps' must be a positive integer or 'all', not 'ten'"
    with pytest.raises(TypeError):
        apply_overrides(Config(), stpes=3)


# -- error messages (exact) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "steps: 3\nfail_on: error\nzero_atol: 0\nexpct:\n  - a\n",
            "gradcheck.yaml:4:1: unknown key 'expct' (did you mean 'expect'?)",
        ),
        (
            "bogus: 1\n",
            "gradcheck.yaml:1:1: unknown key 'bogus' (known keys: expect, allow_none, "
            "allow_zero, frozen, steps, stop_after, zero_atol, fail_on, ignore, script)",
        ),
        (
            "fail_on: error\nsteps: ten\n",
            "gradcheck.yaml:2:8: 'steps' must be a positive integer or 'all', not 'ten'",
        ),
        ("steps: 0\n", "gradcheck.yaml:1:8: 'steps' must be a positive integer or 'all', not 0"),
        (
            "steps: true\n",
            "gradcheck.yaml:1:8: 'steps' must be a positive integer or 'all', not true",
        ),
        (
            "stop_after: 1.5\n",
            "gradcheck.yaml:1:13: 'stop_after' must be a positive integer, not 1.5",
        ),
        (
            "expect: 3\n",
            "gradcheck.yaml:1:9: 'expect' must be a list of strings (names or globs), not int",
        ),
        (
            "frozen: {a: 1}\n",
            "gradcheck.yaml:1:9: 'frozen' must be a list of strings (names or globs), not mapping",
        ),
        (
            "allow_none:\n  - a\n  - 3\n",
            "gradcheck.yaml:3:5: 'allow_none[1]' must be a string (a name or glob), not int",
        ),
        ("zero_atol: -1\n", "gradcheck.yaml:1:12: 'zero_atol' must be a number >= 0, not -1"),
        (
            "zero_atol: tiny\n",
            "gradcheck.yaml:1:12: 'zero_atol' must be a number >= 0, not 'tiny'",
        ),
        (
            "fail_on: errors\n",
            "gradcheck.yaml:1:10: 'fail_on' must be one of 'error', 'warning', 'never', "
            "not 'errors' (did you mean 'error'?)",
        ),
        (
            "fail_on: 1\n",
            "gradcheck.yaml:1:10: 'fail_on' must be one of 'error', 'warning', 'never', not 1",
        ),
        (
            "ignore:\n  - GC120\n  - unused_param\n",
            "gradcheck.yaml:3:5: 'ignore' entry 'unused_param' is neither a finding kind "
            "nor a rule id (did you mean 'unused_parameter'?)",
        ),
        (
            "ignore: [gc120]\n",
            "gradcheck.yaml:1:10: 'ignore' entry 'gc120' is neither a finding kind "
            "nor a rule id (did you mean 'GC120'?)",
        ),
        (
            "steps: 2\nexpect:\n  - @b\n",
            "gradcheck.yaml:3:5: invalid YAML: found character '@' that cannot start any token",
        ),
        (
            "allow_zero: [model.blocks[0].weight]\n",
            "gradcheck.yaml:1:26: invalid YAML: expected ',' or ']', but got '[' "
            "(quote a name that holds brackets: 'model.blocks[0].weight')",
        ),
        (
            "steps: 2\n---\nsteps: 3\n",
            "gradcheck.yaml:2:1: invalid YAML: expected a single document in the stream, "
            "but found another document",
        ),
        (
            "- steps\n- 3\n",
            "gradcheck.yaml:1:1: the config must be a mapping of keys to values, not list",
        ),
        (
            "just text\n",
            "gradcheck.yaml:1:1: the config must be a mapping of keys to values, not str",
        ),
        ("steps: 1\nsteps: 2\n", "gradcheck.yaml:2:1: duplicate key 'steps' (first set on line 1)"),
    ],
)
def test_yaml_error_messages(here: Path, text: str, message: str) -> None:
    assert yaml_error(here, text) == message


def test_unknown_ignore_entry_without_a_close_match_lists_the_kinds(here: Path) -> None:
    message = yaml_error(here, "ignore: [zzzzzz]\n")
    kinds = ", ".join(RULES)
    assert message == (
        "gradcheck.yaml:1:10: 'ignore' entry 'zzzzzz' is neither a finding kind nor a rule id "
        f"(kinds: {kinds})"
    )


def test_only_safe_yaml_is_read(here: Path) -> None:
    target = here / "pwned"
    text = f"steps: 2\nexpect: !!python/object/apply:os.mkdir ['{target}']\n"
    assert yaml_error(here, text) == (
        "gradcheck.yaml:2:9: unsupported YAML tag '!!python/object/apply:os.mkdir' "
        "(a config holds only plain strings, numbers, booleans, lists and mappings)"
    )
    assert not target.exists()
    assert yaml_error(here, "frozen:\n  - !!python/name:os.system\n").startswith(
        "gradcheck.yaml:2:5: unsupported YAML tag '!!python/name:os.system'"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "steps = 3\nexpct = []\n",
            "pyproject.toml [tool.gradcheck]:6: unknown key 'expct' (did you mean 'expect'?)",
        ),
        (
            'steps = "ten"\n',
            "pyproject.toml [tool.gradcheck]:5: 'steps' must be a positive integer or 'all', "
            "not 'ten'",
        ),
        (
            'expect = [\n  "a",\n  3,\n]\n',
            "pyproject.toml [tool.gradcheck]:7: 'expect[1]' must be a string (a name or glob), "
            "not int",
        ),
        (
            'fail_on = "warn"\n',
            "pyproject.toml [tool.gradcheck]:5: 'fail_on' must be one of 'error', 'warning', "
            "'never', not 'warn' (did you mean 'warning'?)",
        ),
        (
            "steps = \n",
            "pyproject.toml:5:9: invalid TOML: Invalid value",
        ),
    ],
)
def test_pyproject_error_messages(here: Path, body: str, message: str) -> None:
    assert pyproject_error(here, PYPROJECT_HEAD + body) == message


def test_pyproject_table_that_is_not_a_table(here: Path) -> None:
    message = pyproject_error(here, "[tool]\ngradcheck = 3\n")
    assert message == "pyproject.toml [tool.gradcheck]: must be a table, not int"


def test_pyproject_positions(here: Path) -> None:
    text = PYPROJECT_HEAD + "steps = 3\nexpect = [\n  'a',  # first\n  \"b.*\",\n]\n"
    (here / "pyproject.toml").write_text(text)
    config = load_config()
    assert config.expect == ["a", "b.*"]
    assert config.positions["steps"] == (5, 9)
    assert config.positions["expect[0]"] == (7, 3)
    assert config.positions["expect[1]"] == (8, 3)
    error = unmatched_error(config, "expect", "b.*", 1, ["c.weight"])
    assert (
        error.message
        == "pyproject.toml [tool.gradcheck]:8: expect entry 'b.*' matches no parameter"
    )


# -- names ---------------------------------------------------------------------------------------

NAMES = [
    "model.encoder.0.weight",
    "model.encoder.0.bias",
    "model.decoder.weight",
    "model.decoder.bias",
    "model.head.weight",
    "model.blocks[0].weight",
    "model.blocks[1].weight",
    "learner.vars[0]",
    "learner.vars[12]",
    "params['w']",
    "w",
]


@pytest.mark.parametrize(
    ("pattern", "matched"),
    [
        ("w", ["w"]),
        ("model.head.weight", ["model.head.weight"]),
        ("model.encoder.*", ["model.encoder.0.weight", "model.encoder.0.bias"]),
        ("model.*.bias", ["model.encoder.0.bias", "model.decoder.bias"]),  # `*` spans dots
        ("*.bias", ["model.encoder.0.bias", "model.decoder.bias"]),
        ("model.encoder.?.bias", ["model.encoder.0.bias"]),
        ("model.blocks[0].weight", ["model.blocks[0].weight"]),  # literal index
        ("model.blocks[0].*", ["model.blocks[0].weight"]),
        ("learner.vars[0]", ["learner.vars[0]"]),
        ("learner.vars[12]", ["learner.vars[12]"]),  # index 12, not the class {1, 2}
        ("params['w']", ["params['w']"]),
        ("model.[de]*coder.bias", ["model.decoder.bias"]),  # a real character class
        ("model.blocks[[][1-9]*", ["model.blocks[1].weight"]),
        ("model.blocks?[!0]?.weight", ["model.blocks[1].weight"]),
        ("Model.*", []),  # case-sensitive
        ("model.encoder", []),  # whole names only
    ],
)
def test_match_names(pattern: str, matched: list[str]) -> None:
    matches, unmatched = match_names([pattern], NAMES)
    assert matches == {pattern: matched}
    assert unmatched == ([] if matched else [pattern])


def test_match_names_reports_every_pattern_in_order() -> None:
    matches, unmatched = match_names(["nope.*", "w", "learner.vars[1]"], NAMES)
    assert list(matches) == ["nope.*", "w", "learner.vars[1]"]
    assert unmatched == ["nope.*", "learner.vars[1]"]


def test_unmatched_error(here: Path) -> None:
    config = load_yaml(here, "steps: 3\nexpect:\n  - model.encdr.*\n")
    error = unmatched_error(config, "expect", "model.encdr.*", 0, NAMES)
    assert error.message == (
        "gradcheck.yaml:3:5: expect entry 'model.encdr.*' matches no parameter; "
        "closest: model.encoder.0.weight, model.encoder.0.bias"
    )
    assert error.exit_code == 2
    far = unmatched_error(config, "expect", "zzz", 0, NAMES)
    assert far.message == "gradcheck.yaml:3:5: expect entry 'zzz' matches no parameter"


def test_unmatched_error_for_a_cli_value_names_the_option(here: Path) -> None:
    config = apply_overrides(load_yaml(here, "expect: [a]\n"), expect=["model.head.wieght"])
    error = unmatched_error(config, "expect", "model.head.wieght", 0, NAMES)
    assert error.message == (
        "--expect: expect entry 'model.head.wieght' matches no parameter; "
        "closest: model.head.weight"
    )


# -- schema --------------------------------------------------------------------------------------


def test_config_schema() -> None:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]) == set(KEYS)
    for spec in schema["properties"].values():
        assert spec["title"] and spec["description"]
    ignorable = schema["$defs"]["ignorable"]["enum"]
    known = [*RULES, *(rule.id for rule in RULES.values())]
    assert ignorable == known, (
        "config_schema() $defs.ignorable.enum must list every kind, "
        "then every rule id, of gradcheck_cli/rules.py RULES"
    )
    validator = jsonschema.Draft202012Validator(schema)
    full = {
        "expect": ["model.encoder.*", "learner.vars[0]"],
        "allow_none": "model.head.bias",
        "allow_zero": ["model.blocks[0].weight"],
        "frozen": ["backbone.*"],
        "steps": 10,
        "stop_after": 20,
        "zero_atol": 1e-8,
        "fail_on": "warning",
        "ignore": ["unused_parameter", "GC301"],
    }
    assert list(validator.iter_errors(full)) == []
    assert list(validator.iter_errors(Config().to_dict())) == []
    assert list(validator.iter_errors({"expct": ["a"]}))
    assert list(validator.iter_errors({"steps": 0}))
    assert list(validator.iter_errors({"fail_on": "sometimes"}))
    assert list(validator.iter_errors({"ignore": ["unused_param"]}))


def test_schema_is_generated_from_the_config_fields_and_the_kinds_registry() -> None:
    # No packaged copy to go stale: a kind added to rules.py is ignorable at once, a key added to
    # Config is in the schema at once (gradcheck_cli/options.py).
    assert not (Path(__file__).parents[1] / "gradcheck_cli/schemas/config.schema.json").exists()
    generated = config_schema()
    assert generated["$defs"]["ignorable"]["enum"] == [*RULES, *(r.id for r in RULES.values())]
    assert list(generated["properties"]) == list(KEYS) == list(OPTIONS)
    for key, spec in generated["properties"].items():
        assert (spec["title"], spec["description"]) == (OPTIONS[key].title, OPTIONS[key].doc)
        assert spec["default"] == getattr(Config(), key)


def test_unreadable_config_files(here: Path) -> None:
    (here / "gradcheck.yaml").write_bytes(b"steps: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.message == "gradcheck.yaml: cannot read the config: it is not UTF-8 text"
    (here / "conf").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config("conf")
    assert caught.value.message == "config file is a directory: conf"


def test_pyproject_position_not_found_names_the_table(here: Path) -> None:
    (here / "pyproject.toml").write_text('[tool]\ngradcheck = { steps = "ten" }\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.message == (
        "pyproject.toml [tool.gradcheck]: 'steps' must be a positive integer or 'all', not 'ten'"
    )
