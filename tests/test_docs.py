"""The README's set-up commands are the ones CI runs, word for word."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up (fresh machine)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_setup_commands_as_written():
    commands = setup_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)  # one line each
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci_lines, command
    main, tests = commands
    assert "python3 -m venv .venv" in main and "python3 -m venv .venv" in tests
    assert tests.endswith("python -m pytest")
    # a failure stops the loop in a subshell: never `exit` in the user's own shell
    assert "|| exit 1; done)" in main and not re.search(r"(^|[;&|]\s*)exit\b", main.split("(")[0])


def _complete(words: str) -> list[str]:
    import os
    import subprocess
    import sys

    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1),
           "_CONVCLI_COMPLETE": "bash_complete"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", "from convcli.cli import main; main(prog_name='convcli')"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    return proc.stdout.split()


def test_shell_completion_knows_kernels_and_boundary_modes():
    assert _complete("convcli apply x.png -k gau") == ["plain,gaussian", "file,gau"]
    assert "plain,sobel" in _complete("convcli batch in -o out -k so")
    assert _complete("convcli blur x.png --boundary mi") == ["plain,mirror"]
    assert "plain,reflect101" in _complete("convcli apply x.png --boundary re")


def test_readme_examples_run_as_printed_in_order(tmp_path):
    import os
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Examples\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)
    assert block.count("convcli ") >= 15
    for name in ("sample_images", "kernels"):
        (tmp_path / name).symlink_to(ROOT / name)
    script = f'set -e\nconvcli() {{ "{sys.executable}" -m convcli "$@"; }}\n{block}\n'
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    made_files = [
        "soft.jpg",
        "edges.png",
        "emboss.png",
        "sharp.tif",
        "report.json",
        "blurred/camera.png",
        "edges/coffee.png",
        "boxed/coffee.jpg",
        "soft16.tif",
    ]
    for made in made_files:
        assert (tmp_path / made).is_file(), made
