"""README and `--help` match the code: every example runs, every option is documented."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import PIPELINE_SETTINGS, REPO

from cellstore.cli.app import app

README = (REPO / "README.md").read_text()
COMMANDS = typer.main.get_command(app).commands  # name → click command
# Commands whose examples need a server this fixture has not got; their own tests run them.
NEEDS_SERVER = {"migrate": "a PostgreSQL catalog (tests/test_postgres_migrate.py runs it)"}


def help_text(*command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cellstore", *command, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def help_examples(command) -> list[str]:  # noqa: ANN001 (a click command)
    """Example lines of a command's help: `\\b` paragraphs (kept unwrapped) of `cellstore ...`."""
    examples = []
    for paragraph in (command.help or "").split("\n\n"):
        lines = [line.strip() for line in paragraph.strip().splitlines()]
        runnable = [line for line in lines if line.startswith("cellstore ")]
        if runnable:
            assert lines[0] == "\b", f"example paragraph not in a \\b block: {paragraph!r}"
            examples.extend(runnable)
    return examples


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def readme_commands() -> list[str]:
    commands = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip())
            if line.startswith("cellstore "):
                commands.append(line)
    return commands


def options_shown(text: str) -> set[str]:
    section = text.split("Options:", 1)[1]
    return set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", section, re.M)) - {"--help"}


def readme_row(command: str) -> str:
    rows = [line for line in README.splitlines() if line.startswith(f"| `cellstore {command}")]
    assert len(rows) == 1, f"README command table: {len(rows)} rows for {command}"
    return rows[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_help_shows_is_in_the_readme_command_table(command):
    shown = options_shown(help_text(command))
    cells = readme_row(command).split(" | ")
    documented = set(re.findall(r"--[\w-]+", cells[1]))
    assert shown == documented, f"--help {sorted(shown)} vs README {sorted(documented)}"


def test_help_texts_are_clean():
    texts = {name: help_text(name) for name in COMMANDS} | {"": help_text()}
    for name, text in texts.items():
        assert "<bool>" not in text, name
        stray = re.findall(r".*\w \.(?:\s|$).*", text)  # e.g. "folder to load ." (eaten text)
        assert not stray, (name, stray)
        assert "[default: ]" not in text, name
    listing = texts[""].split("Commands:", 1)[1]
    assert "..." not in listing, listing  # every summary fits: no cut-off first sentence
    for name, command in COMMANDS.items():
        assert help_examples(command), f"cellstore {name} --help shows no example"


@pytest.fixture(scope="module")
def project(pipeline, tmp_path_factory) -> Path:
    """A demo-like project folder: the repository's stages, a copy of the built warehouse."""
    assert pipeline.first.returncode == 0, pipeline.first.stdout + pipeline.first.stderr
    root = tmp_path_factory.mktemp("docs") / "project"
    root.mkdir()
    for folder in ("sql", "stages", "schemas"):
        (root / folder).symlink_to(REPO / folder)
    shutil.copytree(pipeline.warehouse, root / "warehouse")
    (root / "cellstore.toml").write_text(
        f'[settings]\nsource = "{pipeline.source}"\n\n{PIPELINE_SETTINGS}'
    )
    return root


def run_in(project: Path, command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", command], cwd=project, capture_output=True, text=True, env=env, timeout=600
    )


EXAMPLES = sorted(
    {
        example
        for name, command in COMMANDS.items()
        if name not in NEEDS_SERVER
        for example in help_examples(command)
    }
    | set(readme_commands())
)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_runs(project, example):
    done = run_in(project, example)
    assert done.returncode == 0, f"{example}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    if example.startswith("cellstore build") and "--dry-run" not in example:
        assert "built " not in done.stdout, done.stdout  # the copied warehouse is up to date


@pytest.mark.parametrize("block", range(len(readme_blocks("python"))))
def test_every_readme_python_recipe_runs(project, block):
    code = readme_blocks("python")[block]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{code}\n{done.stderr[-2000:]}"


def test_the_examples_cover_the_readme_and_every_command():
    assert len(readme_commands()) >= 7 and readme_blocks("python")
    assert {e.split()[1] for e in EXAMPLES} >= set(COMMANDS) - set(NEEDS_SERVER)
    assert all(help_examples(COMMANDS[name]) for name in NEEDS_SERVER)
