"""The README documents what the tool actually has: commands, options, profiles, exit codes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from anonymizer import cli, standard
from anonymizer.profiles import builtin_profile_names
from anonymizer.profiles.spec import TOP_KEYS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_option_is_documented() -> None:
    parser = cli.build_parser()
    commands = _subparsers(parser)
    assert {"run", "profiles", "keygen", "report"} <= set(commands)
    for name, sub in commands.items():
        assert f"anonymizer {name}" in README, name
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert f"`{option}" in README, f"{name} {option} is not in the README"
    for name in _subparsers(commands["profiles"]):
        assert f"anonymizer profiles {name}" in README


def test_every_profile_key_option_and_builtin_is_documented() -> None:
    for key in TOP_KEYS:
        assert f"`{key}" in README, key
    for option in standard.OPTIONS:
        assert f"`{option}`" in README, option
    for name in builtin_profile_names():
        assert f"| `{name}` |" in README, name


def test_exit_codes_in_readme_match_the_cli() -> None:
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", README, re.MULTILINE)}
    from anonymizer.pipeline import runner

    actual = {cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_INTERRUPTED,
              cli.EXIT_BROKEN_PIPE,
              runner.EXIT_OUTPUT_UNWRITABLE, runner.EXIT_SIGTERM}
    assert actual <= documented
