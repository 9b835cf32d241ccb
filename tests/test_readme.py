"""The README documents what the tool actually has: commands, options, profiles, exit codes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from conftest import SAMPLE_DATA

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


def _python_api_example() -> str:
    section = README.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def test_the_python_api_example_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's example, as written, in a folder holding sample_data and a key."""
    import anonymizer

    (tmp_path / "sample_data").symlink_to(SAMPLE_DATA, target_is_directory=True)
    (tmp_path / "project.key").write_bytes(b"readme-example-key-0123456789abcdef")
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_api_example(), "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("12 written, 0 failed: {} exit code 0"), printed
    written = anonymizer.run("sample_data", "release", profile="research",
                             key_file="project.key")
    assert written.counts["unchanged"] == 12  # the example's run, resumed: nothing to do
    outputs = {path.read_bytes() for path in (tmp_path / "release").rglob("*.dcm")}
    assert (tmp_path / "IM0001-deid.dcm").read_bytes() in outputs
    for name in anonymizer.__all__:
        assert f"`{name}" in README or name == "__version__", name
