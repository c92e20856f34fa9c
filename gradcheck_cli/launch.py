"""``gradcheck run --nproc-per-node N SCRIPT``: the ranks launched through torch's own launcher.

The command line is parsed by ``torch.distributed.run`` (as ``--standalone``: one node, a free
rendezvous port) and run by its elastic agent (``elastic_launch``), exactly as ``torchrun --standalone
--nproc-per-node N -m gradcheck_cli run ... SCRIPT`` would; each rank is a ``gradcheck run``
without this option, and rank 0 prints the one merged report (``distributed.py``). What torchrun
adds on top is left out: its ``ChildFailedError`` banner and its agent's log lines when a rank
exits non-zero — which rank 0 does whenever there are findings. This process exits with rank 0's
status (gradcheck's), or, when rank 0 succeeded, with the first failed rank's.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from typing import Any

from gradcheck_cli.errors import CommandError

_NPROC_WORDS = ("auto", "cpu", "gpu")


def check_nproc(value: str) -> str:
    """``--nproc-per-node``'s value as torchrun accepts it, or a one-line usage error."""
    if value in _NPROC_WORDS or (value.isdigit() and int(value) >= 1):
        return value
    raise CommandError(
        f"--nproc-per-node must be a positive number or one of {', '.join(_NPROC_WORDS)}, "
        f"not {value!r}"
    )


def forwarded_options(ctx: Any, skip: set[str]) -> list[str]:
    """The options of this ``run`` command line that were given, spelled for a rank's ``run``."""
    argv: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if param.param_type_name != "option" or name in skip:
            continue
        source = ctx.get_parameter_source(name)
        if source is None or source.name == "DEFAULT":
            continue
        value = ctx.params[name]
        flag = max(param.opts, key=len)  # the long spelling
        if param.is_flag:
            argv += [flag] if value else []
        elif param.multiple:
            for v in value or ():
                argv += [flag, str(v)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def launch(nproc: str, rank_argv: list[str]) -> int:
    """Run ``python -m gradcheck_cli run RANK_ARGV`` on ``nproc`` local ranks; the exit status."""
    if "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise CommandError(
            "--nproc-per-node starts the ranks itself: under torchrun, run `gradcheck_cli run` "
            "without it"
        )
    try:
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.launcher.api import elastic_launch
        from torch.distributed.run import config_from_args, parse_args
    except ImportError as e:
        raise CommandError(f"--nproc-per-node needs torch.distributed ({e})") from None
    # What torchrun's `--standalone` means (torch.distributed.run.run): one node, a c10d
    # rendezvous on a free local port, a fresh run id.
    args = parse_args(
        [
            "--nnodes=1",
            "--rdzv-backend=c10d",
            "--rdzv-endpoint=localhost:0",
            f"--rdzv-id={uuid.uuid4()}",
            f"--nproc-per-node={nproc}",
            "-m",
            "gradcheck_cli",
            "run",
            *rank_argv,
        ]
    )
    _quiet_launcher()
    config, cmd, cmd_args = config_from_args(args)
    try:
        elastic_launch(config, cmd)(*cmd_args)
    except ChildFailedError as e:
        return status_of({rank: f.exitcode for rank, f in e.failures.items()})
    except Exception as e:  # the launcher itself failed (a rendezvous that timed out, ...)
        raise CommandError(f"torch's launcher failed: {type(e).__name__}: {e}") from None
    return 0


def status_of(exit_codes: dict[int, int]) -> int:
    """The launch's exit status from its failed ranks' exit codes (a signal N gives 128 + N).

    Rank 0 first: it holds gradcheck's status; a rank killed by the agent's SIGTERM after another
    rank failed is not the cause.
    """
    order = sorted(exit_codes, key=lambda r: (r != 0, exit_codes[r] == -signal.SIGTERM, r))
    code = exit_codes[order[0]]
    return 128 - code if code < 0 else code


def _quiet_launcher() -> None:
    # The agent logs every non-zero rank as an error, and the SIGTERM it sends the others; the
    # merged report says what happened. Its own failures raise (a one-line error, exit 2). The
    # launcher's banner on OMP_NUM_THREADS (set to 1 when unset, as torchrun does) is the README's.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    logging.getLogger("torch.distributed.run").setLevel(logging.ERROR)
