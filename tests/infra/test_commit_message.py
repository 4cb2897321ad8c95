from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from maskline.infra.commit_message import MAX_SUBJECT, problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_a_short_subject_with_its_detail_in_the_body_passes() -> None:
    assert problems("refactor: one way to open a store\n\nEvery key-value store is a BucketStore.\n") == []
    assert problems("# a comment git adds\ndocs: architecture\n# and another\n") == []


@pytest.mark.unit
def test_a_long_subject_a_missing_blank_line_and_an_empty_message_are_refused() -> None:
    long = "perf: " + "x" * MAX_SUBJECT
    assert problems(long) == [f"the subject has {len(long)} characters (at most 72): move the detail into the body"]
    no_blank = problems("fix: a thing\nthe detail runs on")
    assert no_blank == ["the second line is not blank: a blank line separates the subject from the body"]
    assert problems("fix: a thing.") == ["the subject ends with a full stop"]
    assert problems("# only comments\n\n") == ["the message is empty"]


@pytest.mark.unit
def test_subjects_git_writes_itself_pass() -> None:
    assert problems("Merge branch 'a-branch-with-a-name-long-enough-to-run-past-the-limit-of-the-house-rule' into main") == []


@pytest.mark.integration
def test_the_commit_msg_hook_the_project_ships_refuses_a_long_subject(tmp_path: Path) -> None:
    """`git commit` in a repository with the project's hooks installed (as `just hooks` does): the
    project's own .pre-commit-config.yaml and .venv, a scratch repository (pre-commit stashes
    unstaged files of the repository it runs in; the checkout is left alone)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".venv").symlink_to(Path(sys.prefix))
    (repo / ".pre-commit-config.yaml").write_text((ROOT / ".pre-commit-config.yaml").read_text())

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        who = ["-c", "user.name=maskline", "-c", "user.email=dev@maskline.invalid"]
        return subprocess.run(["git", *who, *args], cwd=repo, capture_output=True, text=True)

    assert git("init", "-q").returncode == 0
    assert git("add", ".pre-commit-config.yaml").returncode == 0
    pre_commit = str(Path(sys.executable).parent / "pre-commit")
    installed = subprocess.run([pre_commit, "install"], cwd=repo, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr

    refused = git("commit", "-q", "-m", "docs: " + "a very long subject " * 5)
    assert refused.returncode != 0 and "the subject has 105 characters" in refused.stdout + refused.stderr
    assert git("commit", "-q", "-m", "docs: the hooks", "-m", "A body with the detail.").returncode == 0
    assert git("log", "--format=%s").stdout.splitlines() == ["docs: the hooks"]
