"""The README's command and configuration tables say what the code does.

The variables are the ones ``Config.from_env`` actually reads (recorded, not listed by
hand); the commands and flags are the parser's own.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from taskbox import cli
from taskbox.config import Config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


class _Recording(Mapping[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_configuration_table_lists_exactly_the_variables_read() -> None:
    env = _Recording()
    Config.from_env(env)
    read = {name for name in env.asked if not name.endswith("_FILE")}
    section = _section("Configuration")
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section.split("| variable |")[1]))
    ignored = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section.split("Accepted and ignored")[1]))
    serve_only = {"TASKBOX_API_TOKEN"}
    assert read - documented == set(), "variables read but not in the README table"
    assert documented - read - ignored - serve_only == set(), "documented but never read"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_commands_table_lists_every_command_and_flag() -> None:
    section = _section("Commands")
    for name, sub in _subparsers().items():
        assert f"`taskbox {name}" in section, f"taskbox {name} is not in the Commands table"
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in section, f"taskbox {name} {flag} is not documented"


def test_license_file_matches_pyproject() -> None:
    root = Path(__file__).resolve().parents[2]
    declared = re.search(r'^license = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M)
    assert declared is not None and declared.group(1) == "Apache-2.0"
    text = (root / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
