"""Publishing to a gh-pages branch: real jekyll and git, a local bare repo as the remote."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gallery.errors import GalleryError
from gallery.publish import publish

JEKYLL = shutil.which("jekyll")
needs_jekyll = pytest.mark.skipif(
    JEKYLL is None and not os.environ.get("GALLERY_REQUIRE_JEKYLL"),
    reason="jekyll is not installed (apt-get install jekyll); CI sets GALLERY_REQUIRE_JEKYLL=1",
)


@pytest.fixture(autouse=True)
def git_identity(monkeypatch, tmp_path):
    """A fixed identity and no user or system git config, so tests never depend on the machine."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test Publisher")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_site(folder: Path) -> Path:
    (folder / "assets").mkdir(parents=True)
    (folder / "_config.yml").write_text('title: Test\nbaseurl: ""\n')
    (folder / "index.html").write_text(
        '---\nlayout: null\n---\n<link rel="stylesheet" href="{{ \'/assets/x.css\' | relative_url }}">\n'
    )
    (folder / "assets" / "x.css").write_text("body { color: black; }\n")
    return folder


@pytest.fixture
def setup(tmp_path):
    """A site, a bare remote, and the user's work repo with `origin` pointing at the remote."""
    site = make_site(tmp_path / "site")
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("my project\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "remote", "add", "origin", str(bare))
    return site, bare, work


def show(bare: Path, path: str, branch: str = "gh-pages") -> str:
    return git(bare, "show", f"{branch}:{path}")


def tip(bare: Path, branch: str = "gh-pages") -> str:
    return git(bare, "rev-parse", f"refs/heads/{branch}")


@needs_jekyll
def test_publish_applies_baseurl_and_keeps_history(setup):
    site, bare, work = setup
    logs = []
    first = publish(site, repo_dir=work, baseurl="/repo", log=logs.append)
    assert first == tip(bare)
    assert 'href="/repo/assets/x.css"' in show(bare, "index.html")
    assert show(bare, ".nojekyll") == ""
    assert git(bare, "ls-tree", "-r", "--name-only", "gh-pages").split() == [
        ".nojekyll",
        ".prompt-gallery-published.json",
        "assets/x.css",
        "index.html",
    ]
    assert json.loads(show(bare, ".prompt-gallery-published.json"))["files"] == [
        "assets/x.css",
        "index.html",
        ".nojekyll",
        ".prompt-gallery-published.json",
    ]
    assert "Published" in logs[-1]

    # Unchanged: no new commit, the existing tip comes back.
    assert publish(site, repo_dir=work, baseurl="/repo", log=logs.append) == first
    assert git(bare, "rev-list", "--count", "gh-pages") == "1"
    assert "up to date" in logs[-1]

    # One file changed: exactly one new commit, a child of the previous tip.
    (site / "assets" / "x.css").write_text("body { color: red; }\n")
    second = publish(site, repo_dir=work, baseurl="/repo", message="restyle", log=logs.append)
    assert second != first and second == tip(bare)
    assert git(bare, "rev-list", "--count", "gh-pages") == "2"
    assert git(bare, "rev-parse", f"{second}^") == first
    assert git(bare, "log", "-1", "--format=%s", "gh-pages") == "restyle"
    assert "color: red" in show(bare, "assets/x.css")


@needs_jekyll
def test_user_repo_is_untouched(setup):
    site, bare, work = setup
    head = git(work, "rev-parse", "HEAD")
    publish(site, repo_dir=work, log=lambda _: None)
    assert git(work, "branch", "--show-current") == "main"
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "status", "--porcelain", "--ignored") == ""
    assert git(work, "branch", "--list").split() == ["*", "main"]
    assert git(bare, "branch", "--list", "main") == ""  # only gh-pages went to the remote
    assert not (site / ".jekyll-cache").exists() and not (site / "_site").exists()


@needs_jekyll
def test_no_baseurl_and_remote_given_as_path(setup, tmp_path, monkeypatch):
    site, bare, _ = setup
    monkeypatch.chdir(tmp_path)  # not a git repository: the remote must be a URL or path
    sha = publish(site, remote="remote.git", branch="pages", log=lambda _: None)
    assert sha == tip(bare, "pages")
    assert 'href="/assets/x.css"' in show(bare, "index.html", "pages")


@needs_jekyll
def test_removed_files_are_removed_from_the_branch(setup):
    site, bare, work = setup
    publish(site, repo_dir=work, log=lambda _: None)
    (site / "assets" / "x.css").unlink()
    publish(site, repo_dir=work, log=lambda _: None)
    assert "assets/x.css" not in git(bare, "ls-tree", "-r", "--name-only", "gh-pages")


@needs_jekyll
def test_git_failure_is_a_gallery_error(setup, tmp_path):
    site, _, work = setup
    with pytest.raises(GalleryError, match="git ls-remote failed"):
        publish(site, remote=str(tmp_path / "missing.git"), repo_dir=work, log=lambda _: None)
    with pytest.raises(GalleryError, match="'upstream' is neither a remote"):
        publish(site, remote="upstream", repo_dir=work, log=lambda _: None)


def test_missing_jekyll_says_what_to_do(setup, monkeypatch):
    site, _, work = setup
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(GalleryError, match=r"install it .*GitHub Actions"):
        publish(site, repo_dir=work, log=lambda _: None)


@needs_jekyll
def test_author_is_the_users_else_a_fallback(setup, monkeypatch):
    site, bare, work = setup
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var)
    publish(site, repo_dir=work, log=lambda _: None)
    assert (
        git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "gh-pages")
        == "prompt-gallery <prompt-gallery@localhost>|prompt-gallery <prompt-gallery@localhost>"
    )
    git(work, "config", "user.name", "Ada")
    git(work, "config", "user.email", "ada@example.org")
    (site / "assets" / "x.css").write_text("body { color: red; }\n")
    publish(site, repo_dir=work, log=lambda _: None)
    assert git(bare, "log", "-1", "--format=%an <%ae>", "gh-pages") == "Ada <ada@example.org>"


@needs_jekyll
def test_git_dir_from_a_hook_does_not_redirect_the_commit(setup, monkeypatch):
    site, bare, work = setup
    monkeypatch.setenv("GIT_DIR", str(work / ".git"))  # as inside a git hook of the user's repo
    head = git(work, "rev-parse", "HEAD")
    publish(site, repo_dir=work, log=lambda _: None)
    monkeypatch.delenv("GIT_DIR")
    assert git(work, "rev-parse", "HEAD") == head and git(work, "status", "--porcelain") == ""
    assert "index.html" in git(bare, "ls-tree", "--name-only", "gh-pages")


def test_github_project_baseurl_is_guessed_from_the_remote():
    from gallery.publish import github_project_baseurl

    assert github_project_baseurl("git@github.com:ana/prompt-gallery.git") == "/prompt-gallery"
    assert github_project_baseurl("https://github.com/ana/prompt-gallery") == "/prompt-gallery"
    assert github_project_baseurl("https://github.com/ana/ana.github.io.git") is None
    assert github_project_baseurl("/tmp/bare.git") is None


def push_files(bare: Path, tmp_path: Path, branch: str, files: dict[str, str]) -> None:
    """Someone else's commit on `branch` of the remote, holding `files`."""
    other = tmp_path / f"other-{branch}"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    git(other, "checkout", "-q", "--orphan", branch) if branch not in git(other, "branch", "-r") else git(
        other, "checkout", "-q", branch
    )
    for rel, text in files.items():
        (other / rel).parent.mkdir(parents=True, exist_ok=True)
        (other / rel).write_text(text)
    git(other, "add", *files)
    git(other, "commit", "-q", "-m", "theirs")
    git(other, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")


@needs_jekyll
def test_files_others_put_on_the_branch_stay(setup, tmp_path):
    site, bare, work = setup
    publish(site, repo_dir=work, log=lambda _: None)
    push_files(bare, tmp_path, "gh-pages", {"CNAME": "gallery.example.org\n", "blog/post.html": "<p>mine</p>\n"})
    (site / "assets" / "x.css").unlink()
    (site / "new.html").write_text("new\n")
    publish(site, repo_dir=work, log=lambda _: None)
    files = git(bare, "ls-tree", "-r", "--name-only", "gh-pages").split()
    assert "CNAME" in files and "blog/post.html" in files and show(bare, "CNAME") == "gallery.example.org"
    assert "new.html" in files and "assets/x.css" not in files  # ours: replaced and removed as the site changed


@needs_jekyll
def test_a_file_it_did_not_write_is_replaced_only_when_told(setup, tmp_path):
    site, bare, work = setup
    push_files(bare, tmp_path, "gh-pages", {"index.html": "their page\n", "CNAME": "x.example.org\n"})
    with pytest.raises(GalleryError, match=r"did not publish and would replace: index\.html.*--overwrite"):
        publish(site, repo_dir=work, log=lambda _: None)
    assert show(bare, "index.html") == "their page"
    publish(site, repo_dir=work, overwrite=True, log=lambda _: None)
    assert "stylesheet" in show(bare, "index.html") and show(bare, "CNAME") == "x.example.org"


@needs_jekyll
def test_a_branch_with_the_users_sources_is_refused_unless_told(setup, tmp_path):
    site, bare, work = setup
    git(work, "push", "-q", "origin", "main")
    git(bare, "symbolic-ref", "HEAD", "refs/heads/main")  # the remote's default branch
    with pytest.raises(GalleryError, match=r"default branch.*--source-branch"):
        publish(site, repo_dir=work, branch="main", log=lambda _: None)
    git(work, "checkout", "-q", "-b", "pages-work")
    with pytest.raises(GalleryError, match="checked out here"):
        publish(site, repo_dir=work, branch="pages-work", log=lambda _: None)
    publish(site, repo_dir=work, branch="main", source_branch=True, log=lambda _: None)
    assert show(bare, "README.md", "main") == "my project"  # the sources stay beside the site


def test_a_git_failure_says_what_git_said(setup, tmp_path):
    _, _, work = setup
    from gallery.publish import _git

    with pytest.raises(GalleryError) as err:
        _git(["ls-remote", str(tmp_path / "missing.git")], work)
    assert "does not appear to be a git repository" in str(err.value)
    assert "and the repository exists" not in str(err.value)
