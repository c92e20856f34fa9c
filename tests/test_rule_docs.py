"""`gradcheck rule`: one documentation page per finding kind, the same text in SARIF's help."""

from __future__ import annotations

import re
import subprocess

import pytest
from procs import GRADCHECK_FORMS, child_env

from gradcheck_cli.model import Report, ScriptInfo
from gradcheck_cli.ruledoc import SECTIONS, body, find_rule, rule_doc
from gradcheck_cli.rules import RULES
from gradcheck_cli.sarif import render_sarif


def _gradcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GRADCHECK_FORMS["console-script"], *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


@pytest.mark.parametrize("kind", sorted(RULES))
def test_every_kind_has_a_doc_with_every_section(kind: str) -> None:
    text = rule_doc(kind)
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == list(SECTIONS)
    rule = RULES[kind]
    assert text.startswith(f"# {rule.id} {kind}: {rule.title}")
    assert rule.hint in text  # the Fix section is the registry's hint, not a copy
    assert "```python" in text
    allow = text.split("## Allow", 1)[1]
    assert kind in allow or rule.id in allow or "frozen" in allow
    # every doc file belongs to a kind: no orphan pages
    assert body(kind).strip()


def test_lookup_by_kind_or_id() -> None:
    assert find_rule("GC101") is RULES["detach"]
    assert find_rule("gc103") is RULES["no_grad"]
    assert find_rule("zero_grad_flow") is RULES["zero_grad_flow"]
    assert find_rule("nothing") is None


def test_rule_command_prints_the_doc() -> None:
    r = _gradcheck("rule", "GC101")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# GC101 detach: gradient cut by .detach()")
    for section in SECTIONS:
        assert f"## {section}" in r.stdout
    assert RULES["detach"].hint in r.stdout
    assert 'allow_none: ["model.0.*"]' in r.stdout
    assert _gradcheck("rule", "detach").stdout == r.stdout


def test_rule_command_without_argument_lists_every_kind() -> None:
    r = _gradcheck("rule")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("GC")]
    assert {row[0] for row in rows} == {rule.id for rule in RULES.values()}
    assert rows[[row[0] for row in rows].index("GC201")][:3] == ["GC201", "zero_grad_flow", "error"]


def test_unknown_rule_is_one_line_exit_2() -> None:
    r = _gradcheck("rule", "detch")
    assert r.returncode == 2
    assert r.stderr == "gradcheck: error: unknown rule 'detch' (did you mean detach?)\n"
    assert r.stdout == ""


def test_sarif_help_is_the_rule_doc() -> None:
    report = Report(tool={}, environment={}, script=ScriptInfo("t.py", []), config={})
    rules = render_sarif(report)["runs"][0]["tool"]["driver"]["rules"]
    for r in rules:
        kind = r["properties"]["tags"][-1]
        assert r["help"]["markdown"] == rule_doc(kind)
        assert "## Why it matters" in r["help"]["text"]
