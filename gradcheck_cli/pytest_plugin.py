"""The pytest plugin (entry point ``pytest11``): a ``gradcheck`` fixture and a ``gradcheck`` marker.

::

    def test_step(gradcheck):
        with gradcheck:                      # or: gradcheck.check(train_step)
            model(x).sum().backward()

    @pytest.mark.gradcheck(expect=["model.*"], allow_none=["model.head.*"])
    def test_training_step():                # every backward() in the test is checked
        train_step()

A finding that fails the check (``fail_on``) fails the test with the report as the message. The
project's ``gradcheck.yaml`` / ``[tool.gradcheck]`` (found in pytest's rootdir) is the default
config; keyword arguments replace its keys. Nothing here imports torch until a check runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_MARKER_HELP = (
    "gradcheck(expect=None, allow_none=None, allow_zero=None, frozen=None, ignore=None, "
    "steps=None, fail_on=None, config=None): check every backward() in the test for parameters "
    "left without a gradient (gradcheck_cli)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)


def _new_watch(rootdir: Path, test_file: Path, options: dict[str, Any]) -> Any:
    from gradcheck_cli.api import Watch, resolve_config
    from gradcheck_cli.sites import display_path

    options = dict(options)
    config = resolve_config(options.pop("config", None), cwd=str(rootdir), **options)
    return Watch(config, name=display_path(str(test_file)), show=False)


def _fail_on_findings(watch: Any) -> None:
    from gradcheck_cli.api import report_text

    if watch.report is not None and not watch.report.ok:
        pytest.fail(report_text(watch.report), pytrace=False)


class GradcheckFixture:
    """``with gradcheck:`` / ``gradcheck.check(fn)`` / ``gradcheck(expect=[...])`` for options."""

    def __init__(self, rootdir: Path, test_file: Path, options: dict[str, Any] | None = None):
        self._rootdir = rootdir
        self._test_file = test_file
        self._options = options or {}
        self._watch: Any = None
        self.report: Any = None  # the last block's report (gradcheck_cli.model.Report)

    def __call__(self, **options: Any) -> GradcheckFixture:
        """The same fixture with config keys replaced: ``with gradcheck(expect=[...]):``."""
        return GradcheckFixture(self._rootdir, self._test_file, {**self._options, **options})

    def __enter__(self) -> Any:
        self._watch = _new_watch(self._rootdir, self._test_file, self._options)
        return self._watch.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        watch, self._watch = self._watch, None
        suppress = watch.__exit__(*exc)
        self.report = watch.report
        if exc[0] is None:
            _fail_on_findings(watch)
        return bool(suppress)

    def check(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` and check its backward calls; returns what it returns."""
        with self:
            return fn(*args, **kwargs)


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> GradcheckFixture:
    """Check the backward calls of a block: ``with gradcheck: loss.backward()``."""
    return GradcheckFixture(request.config.rootpath, request.path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("gradcheck")
    if marker is None:
        return (yield)
    if marker.args:
        raise pytest.UsageError("@pytest.mark.gradcheck takes keyword arguments only")
    watch = _new_watch(item.config.rootpath, item.path, marker.kwargs)
    watch.__enter__()
    try:
        result = yield
    except BaseException as e:
        watch.__exit__(type(e), e, e.__traceback__)
        raise
    watch.__exit__(None, None, None)
    _fail_on_findings(watch)
    return result
