"""SARIF 2.1.0 for GitHub code scanning: the report model to a SARIF log (never imports torch).

One rule per cause kind (all of ``rules.RULES``, so rule indices stay stable between runs), one
result per finding. Result locations are relative to the repository root under ``%SRCROOT%``, as
code scanning expects; the model's site files are relative to the cwd (or absolute).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gradcheck_cli.model import Finding, Report, Site
from gradcheck_cli.report import compact_names
from gradcheck_cli.ruledoc import rule_doc
from gradcheck_cli.rules import RULES, Rule

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://pypi.org/project/gradcheck-cli/"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "gradcheck/v1"

LEVELS = {"error": "error", "warning": "warning", "info": "note"}
_TAGS = ["pytorch", "autograd", "correctness"]


def sorted_rules() -> list[Rule]:
    """Every rule in id order: the driver's rules, so each ``ruleIndex`` is stable."""
    return sorted(RULES.values(), key=lambda r: r.id)


def rule_name(kind: str) -> str:
    """``requires_grad_false`` → ``RequiresGradFalse``."""
    return "".join(part[:1].upper() + part[1:] for part in kind.split("_") if part)


def finding_headline(f: Finding) -> str:
    """Compacted tensor names, then the message: ``layers.*.weight (4 tensors): ...``."""
    return f"{compact_names(f.parameters)}: {f.message}" if f.parameters else f.message


def finding_text(f: Finding) -> str:
    """The finding as plain text: compacted tensor names, the message, and the fix."""
    return f"{finding_headline(f)}\nFix: {f.hint}"


def _link_text(text: str) -> str:
    return re.sub(r"([\\\[\]])", r"\\\1", text)


def find_repo_root(start: str | None = None) -> str:
    """The nearest directory at or above ``start`` (the cwd) holding ``.git``, else ``start``."""
    here = os.path.abspath(start or os.getcwd())
    path = here
    while True:
        if os.path.exists(os.path.join(path, ".git")):  # a file in worktrees and submodules
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return here
        path = parent


def artifact_location(file: str, root: str) -> dict[str, str]:
    """``file`` (relative to the cwd, or absolute) as a ``%SRCROOT%``-relative URI.

    A file outside the repository gets an absolute ``file://`` URI and no base id.
    """
    for resolve in (os.path.abspath, os.path.realpath):
        path = resolve(file)
        try:
            rel = os.path.relpath(path, resolve(root))
        except ValueError:  # another drive on Windows
            continue
        if rel != os.curdir and not rel.startswith(os.pardir + os.sep) and rel != os.pardir:
            return {"uri": quote(rel.replace(os.sep, "/"), safe="/"), "uriBaseId": SRCROOT}
    return {"uri": Path(os.path.abspath(file)).as_uri()}


def _physical_location(site: Site, root: str) -> dict[str, Any]:
    loc: dict[str, Any] = {"artifactLocation": artifact_location(site.file, root)}
    if site.line >= 1:
        region: dict[str, Any] = {"startLine": site.line}
        if site.code:
            region["snippet"] = {"text": site.code}
        loc["region"] = region
    return loc


def _fingerprint(f: Finding, root: str) -> str:
    if f.site is None:
        basis = [f.kind, "", ",".join(sorted(f.parameters))]
    else:
        uri = artifact_location(f.site.file, root)["uri"]
        # The line number only stands in when the source line is unknown.
        code = " ".join(f.site.code.split()) or f"line {f.site.line}"
        basis = [f.kind, uri, code]
    return hashlib.sha256("\0".join(basis).encode("utf-8")).hexdigest()[:32]


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    title = rule.title[:1].upper() + rule.title[1:]
    doc = rule_doc(rule.kind)  # the text `gradcheck rule KIND` prints
    return {
        "id": rule.id,
        "name": rule_name(rule.kind),
        "shortDescription": {"text": title},
        "fullDescription": {"text": f"{title} (gradcheck cause `{rule.kind}`)."},
        "help": {"text": doc, "markdown": doc},
        "helpUri": INFORMATION_URI,
        "defaultConfiguration": {"level": LEVELS.get(rule.severity, "warning")},
        "properties": {"tags": [*_TAGS, rule.kind]},
    }


def _result(
    f: Finding, rule_index: dict[str, int], root: str, seen: dict[str, int]
) -> dict[str, Any]:
    result: dict[str, Any] = {"ruleId": f.id}
    if f.id in rule_index:
        result["ruleIndex"] = rule_index[f.id]
    result["level"] = LEVELS.get(f.severity, "warning")
    lines = [finding_headline(f)]
    related = [s for s in f.stack if s != f.site]
    if related:
        # Code scanning shows related locations only when the message links to them by id.
        chain = " ← ".join(
            f"[{_link_text(s.display)}]({i})" for i, s in enumerate(related, start=1)
        )
        lines.append(f"Called from {chain}")
    lines.append(f"Fix: {f.hint}")
    result["message"] = {"text": "\n".join(lines)}
    if f.site is not None:
        result["locations"] = [{"physicalLocation": _physical_location(f.site, root)}]
    if related:
        result["relatedLocations"] = [
            {
                "id": i,
                "physicalLocation": _physical_location(s, root),
                "message": {"text": f"call in {s.function}" if s.function else "call"},
            }
            for i, s in enumerate(related, start=1)
        ]
    digest = _fingerprint(f, root)
    # Identical findings on identical lines stay distinct, as GitHub's own line hashes do.
    seen[digest] = seen.get(digest, 0) + 1
    result["partialFingerprints"] = {FINGERPRINT_KEY: f"{digest}:{seen[digest]}"}
    props: dict[str, Any] = {"kind": f.kind, "gradState": f.grad_state}
    if f.parameters:
        props["parameters"] = list(f.parameters)
    steps = [s for s in f.steps if s >= 0]
    if steps:
        props["backwardCalls"] = steps
    result["properties"] = props
    return result


def _invocation(report: Report, root: str) -> dict[str, Any]:
    script = report.script
    if script.exit_code is not None:
        ok = script.exit_code == 0
    else:
        ok = script.error is None and not script.interrupted
    inv: dict[str, Any] = {"executionSuccessful": ok}
    if script.exit_code is not None:
        inv["exitCode"] = script.exit_code
    notes: list[dict[str, Any]] = []
    if script.error is not None:
        note: dict[str, Any] = {
            "level": "error",
            "message": {"text": f"the script raised {script.error.type}: {script.error.message}"},
        }
        if script.error.site is not None:
            note["locations"] = [{"physicalLocation": _physical_location(script.error.site, root)}]
        notes.append(note)
    notes.extend({"level": "note", "message": {"text": n}} for n in report.notes)
    if notes:
        inv["toolExecutionNotifications"] = notes
    return inv


def render_sarif(report: Report, root: str | None = None) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log (a dict ready for ``json.dump``).

    ``root`` is the repository root that result URIs are relative to; by default the nearest
    directory above the cwd holding ``.git``, else the cwd.
    """
    root = os.path.abspath(root) if root is not None else find_repo_root()
    rules = sorted_rules()
    rule_index = {r.id: i for i, r in enumerate(rules)}
    seen: dict[str, int] = {}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "gradcheck",
                "version": str(report.tool.get("version", "")) or "unknown",
                "informationUri": INFORMATION_URI,
                "rules": [_rule_descriptor(r) for r in rules],
            }
        },
        "originalUriBaseIds": {SRCROOT: {"uri": Path(root).as_uri().rstrip("/") + "/"}},
        "invocations": [_invocation(report, root)],
        "results": [_result(f, rule_index, root, seen) for f in report.findings],
        "columnKind": "unicodeCodePoints",
    }
    return {"$schema": SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def sarif_text(report: Report) -> str:
    """The SARIF log as the text of a ``--sarif`` file (the reporter in ``reporters.py``)."""
    import json

    return json.dumps(render_sarif(report), indent=2) + "\n"
