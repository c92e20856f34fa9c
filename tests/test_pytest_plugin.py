"""The pytest plugin, through pytester: the fixture, the marker, the project's config."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

MODEL = """
import pytest
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
x = torch.randn(3, 4)
"""


def _line(pytester: pytest.Pytester, marker: str) -> int:
    """The line of ``marker`` in the test file as written (makepyfile strips and dedents)."""
    text = (pytester.path / "test_train.py").read_text()
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def _run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_train=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_fixture_clean_passes_and_detach_fails_with_the_report(pytester: pytest.Pytester) -> None:
    source = (
        MODEL
        + """
def test_clean(gradcheck):
    with gradcheck:
        model(x).sum().backward()


def test_detach(gradcheck):
    with gradcheck:
        h = model[0](x).detach()  # BUG
        model[2](torch.relu(h)).sum().backward()
"""
    )
    result = _run(pytester, source)
    result.assert_outcomes(passed=1, failed=1)
    bug = _line(pytester, "# BUG")
    result.stdout.fnmatch_lines(
        [
            "*_ test_detach _*",
            "gradcheck: 1 finding in test_train.py (1 of 1 backward call checked)",
            "*detach GC101  model.0.* (2 tensors) got no gradient",
            f"    test_train.py:{bug} in test_detach",
            "      h = model[0](x).detach()  # BUG",
            "*FAILED test_train.py::test_detach*",
        ]
    )
    assert "test_clean" not in result.stdout.str().split("short test summary")[-1]
    # the report is the failure text: no Python traceback from gradcheck
    assert "gradcheck_cli" not in result.stdout.str()


def test_fixture_check_form_and_options(pytester: pytest.Pytester) -> None:
    source = (
        MODEL
        + """
def step():
    h = model[0](x).detach()  # BUG
    model[2](torch.relu(h)).sum().backward()
    return "done"


def test_check_fails(gradcheck):
    gradcheck.check(step)


def test_allowed(gradcheck):
    assert gradcheck(allow_none=["model.0.*"]).check(step) == "done"
"""
    )
    result = _run(pytester, source)
    result.assert_outcomes(passed=1, failed=1)
    bug = _line(pytester, "# BUG")
    result.stdout.fnmatch_lines([f"    test_train.py:{bug} in step", "*FAILED*test_check_fails*"])


def test_marker_checks_every_backward_of_the_test(pytester: pytest.Pytester) -> None:
    source = (
        MODEL
        + """
@pytest.mark.gradcheck
def test_marked_clean():
    for _ in range(2):
        model(x).sum().backward()


@pytest.mark.gradcheck
def test_marked_bug():
    with torch.no_grad():  # BUG
        h = model[0](x)
    model[2](h).sum().backward()


@pytest.mark.gradcheck(allow_none=["model.0.*"])
def test_marked_allowed():
    with torch.no_grad():
        h = model[0](x)
    model[2](h).sum().backward()


def test_unmarked_is_not_checked():
    model[2](model[0](x).detach()).sum().backward()
"""
    )
    result = _run(pytester, source)
    result.assert_outcomes(passed=3, failed=1)
    bug = _line(pytester, "# BUG")
    result.stdout.fnmatch_lines(
        [
            "*_ test_marked_bug _*",
            "*no_grad GC103  model.0.* (2 tensors) got no gradient",
            f"    test_train.py:{bug} in test_marked_bug",
            "*FAILED test_train.py::test_marked_bug*",
        ]
    )


def test_project_config_is_the_default(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", gradcheck='allow_none: ["model.0.*"]\n')
    source = (
        MODEL
        + """
@pytest.mark.gradcheck
def test_allowed_by_the_project():
    model[2](model[0](x).detach()).sum().backward()


def test_fixture_too(gradcheck):
    with gradcheck:
        model[2](model[0](x).detach()).sum().backward()
"""
    )
    _run(pytester, source).assert_outcomes(passed=2)


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gradcheck(expect=None, allow_none=None,*"])
