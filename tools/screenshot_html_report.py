"""Regenerate docs/html-report.png, the README's picture of the HTML report.

    python tools/screenshot_html_report.py [--sample detach] [--out docs/html-report.png]

Runs ``gradcheck run --html`` on a bundled sample (from the repository root, so the page shows
``sample_scripts/...`` paths) and photographs the page with headless Chromium (Debian:
``apt-get install chromium``). Needs gradcheck installed in the running Python.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default="detach", help="a sample_scripts/ name (no .py)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "html-report.png"))
    parser.add_argument("--size", default="1000,1250", help="browser window WIDTH,HEIGHT")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        script = f"sample_scripts/{args.sample}.py"
        subprocess.run(
            [sys.executable, "-m", "gradcheck_cli", "run", "-q", "--html", str(page), script],
            cwd=ROOT,
            capture_output=True,
            check=False,  # a sample with findings exits 1
        )
        if not page.is_file():
            print(f"gradcheck wrote no page for {script}", file=sys.stderr)
            return 1
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={Path(tmp) / 'profile'}",
                f"--window-size={args.size}",
                f"--screenshot={Path(args.out).resolve()}",
                page.as_uri(),
            ],
            capture_output=True,
            check=True,
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
