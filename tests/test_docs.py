"""The README against what it describes: CI runs its commands, and its links resolve."""

import re

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def _github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_ci_runs_every_command_of_the_quick_start_word_for_word():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("#", 1)[0] for block in re.findall(r"```bash\n(.*?)```", quick_start, re.S)
             for line in block.splitlines()]
    commands = [command.strip() for line in lines for command in line.split("&&")]
    ci = (ROOT / ".ci/run").read_text()
    assert "dvc repro" in " ".join(commands) and "pytest" in " ".join(commands), commands
    for command in filter(None, commands):
        assert command in ci, f"README's quick start runs `{command}`, .ci/run does not"


def test_every_relative_link_names_a_file_and_heading_that_exist():
    links = re.findall(r"\]\((?!https?://)([^)#]+)(?:#([^)]+))?\)", README)
    assert links
    for path, anchor in links:
        target = ROOT / path
        assert target.exists(), f"README links to {path}, which does not exist"
        if anchor:
            prose = re.sub(r"```.*?```", "", target.read_text(), flags=re.S)  # a `# comment` in code is no heading
            headings = re.findall(r"^#+ (.+)$", prose, re.M)
            assert anchor in {_github_anchor(h) for h in headings}, f"{path} has no heading #{anchor}"
