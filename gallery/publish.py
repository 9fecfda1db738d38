"""Push a built site to a branch of a git remote, for GitHub Pages' "deploy from a branch".

The site is built with `jekyll build` and committed in a throwaway repository inside a temporary
folder, so the user's working tree, index and current branch are never touched. The new commit is
a child of the branch's tip, so history is kept and the push is a plain fast-forward (no force).

The branch may hold files of others (a CNAME for a custom domain, a blog/ folder): every publish
records on the branch which files it wrote (RECORD), replaces and removes only those, and refuses
to overwrite a file it did not write unless told to. A branch that holds the user's sources (the
remote's default branch, or the one checked out here) is refused unless told explicitly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from gallery.errors import GalleryError

FALLBACK_NAME, FALLBACK_EMAIL = "prompt-gallery", "prompt-gallery@localhost"
RECORD = ".prompt-gallery-published.json"  # on the branch: the files the last publish wrote
# Set inside git hooks; they would point every git command, even in the temporary repository, at the user's.
_REPO_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


def github_project_baseurl(url: str) -> str | None:
    """'/repo' for a GitHub project site's remote (github.com/user/repo); None for user.github.io or others."""
    match = re.search(r"github\.com[:/]([^/]+)/([^/]+?)(?:\.git)?/?$", url)
    if not match or match.group(2).lower() == f"{match.group(1).lower()}.github.io":
        return None
    return f"/{match.group(2)}"


def publish(
    site_dir: Path,
    *,
    remote: str = "origin",
    branch: str = "gh-pages",
    repo_dir: Path | None = None,
    baseurl: str | None = None,
    message: str | None = None,
    overwrite: bool = False,
    source_branch: bool = False,
    log=print,
) -> str:
    """Build `site_dir` with Jekyll and push it to `branch` of `remote`; return the branch's sha.
    `overwrite`: replace files on the branch that no earlier publish recorded writing.
    `source_branch`: publish even into a branch that holds the user's sources."""
    site_dir = Path(site_dir)
    if not (site_dir / "_config.yml").is_file():
        raise GalleryError(f"no Jekyll site at {site_dir} (no _config.yml): run `gallery site` first")
    jekyll = shutil.which("jekyll")
    if jekyll is None:
        raise GalleryError(
            "publishing needs jekyll: install it (apt-get install jekyll, or gem install "
            "jekyll) or deploy with the GitHub Actions workflow .github/workflows/pages.yml"
        )
    base = Path(repo_dir) if repo_dir is not None else Path.cwd()
    toplevel = _toplevel(base)
    url = _remote_url(remote, toplevel)
    if baseurl is None:
        baseurl = github_project_baseurl(url)
    identity = [
        "-c",
        f"user.name={_config('user.name', toplevel) or FALLBACK_NAME}",
        "-c",
        f"user.email={_config('user.email', toplevel) or FALLBACK_EMAIL}",
    ]
    with tempfile.TemporaryDirectory(prefix="gallery-publish-") as tmp:
        built, work = Path(tmp) / "built", Path(tmp) / "repo"
        _git(["init", "-q", str(work)], Path(tmp))
        if not source_branch:
            _refuse_source_branch(url, branch, toplevel, work)
        log(f"Building {site_dir} with jekyll" + (f" (baseurl {baseurl})" if baseurl else ""))
        _jekyll_build(jekyll, site_dir, built, baseurl)
        parent = _fetch_tip(url, branch, work)
        if parent:
            _git(["update-ref", "HEAD", parent], work)  # the new commit becomes the tip's child
            _git(["reset", "-q", "--hard"], work)  # the branch's files, ours and others'
        ours = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
        ours += [".nojekyll", RECORD]
        _replace_our_files(work, set(ours), overwrite=overwrite, branch=branch)
        shutil.copytree(built, work, dirs_exist_ok=True)
        (work / ".nojekyll").touch()  # Pages serves the files as they are, without its own Jekyll
        (work / RECORD).write_text(json.dumps({"written_by": "prompt-gallery", "files": ours}, indent=0) + "\n")
        _git(["add", "-A"], work)
        if parent and _run(["git", "diff", "--cached", "--quiet", "HEAD"], work).returncode == 0:
            log(f"{branch} on {url} is already up to date ({parent[:12]})")
            return parent
        text = message or f"Publish prompt gallery {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        _git([*identity, "commit", "-q", "-m", text], work)
        sha = _git(["rev-parse", "HEAD"], work)
        _git(
            ["push", "-q", url, f"HEAD:refs/heads/{branch}"],
            work,
            hint=f"check that you can push to {url} and that nobody else pushed {branch} meanwhile, then try again",
        )
    log(f"Published {sha[:12]} to {branch} on {url}")
    return sha


def _replace_our_files(work: Path, ours: set[str], *, overwrite: bool, branch: str) -> None:
    """Remove from the checked-out branch the files the last publish wrote and this one does not;
    refuse (unless `overwrite`) when this one would replace a file that no publish recorded writing."""
    record = work / RECORD
    try:
        before = set(json.loads(record.read_text(encoding="utf-8"))["files"]) if record.is_file() else set()
    except (ValueError, KeyError, TypeError):
        raise GalleryError(
            f"{RECORD} on {branch} is damaged; check the branch, then publish with --overwrite to rewrite it"
        ) from None
    present = {p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file() and ".git" not in p.parts}
    theirs = sorted((ours & present) - before)
    if theirs and not overwrite:
        shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        raise GalleryError(
            f"{branch} holds files that prompt-gallery did not publish and would replace: {shown}; "
            "pass --overwrite to replace them (every other file on the branch stays), or publish "
            "to another branch with --branch"
        )
    for rel in before - ours:
        path = work / rel
        if path.is_file() and path.resolve().is_relative_to(work.resolve()):
            path.unlink()


def _refuse_source_branch(url: str, branch: str, toplevel: Path | None, work: Path) -> None:
    """A branch that holds the user's sources is not for a built site: refuse the remote's default
    branch and the branch checked out in the user's repository."""
    head = _git(["ls-remote", "--symref", url, "HEAD"], work, hint=f"check the remote {url} exists and you can read it")
    default = re.search(r"^ref: refs/heads/(\S+)\tHEAD", head, re.M)
    current = _run(["git", "branch", "--show-current"], toplevel).stdout.strip() if toplevel else ""
    if (default and default[1] == branch) or current == branch:
        why = "the default branch of " + url if default and default[1] == branch else "the branch checked out here"
        raise GalleryError(
            f"'{branch}' is {why}, which holds your sources; publish to gh-pages (the default), or "
            "pass --source-branch if you really mean to add the built site to it"
        )


def _jekyll_build(jekyll: str, source: Path, dest: Path, baseurl: str | None) -> None:
    """Build into `dest`; no disk cache, so nothing is written into the user's site folder."""
    args = [jekyll, "build", "--disable-disk-cache", "--source", str(source), "--destination", str(dest)]
    if baseurl is not None:
        args += ["--baseurl", baseurl]
    done = _run(args, source)
    if done.returncode != 0:
        raise GalleryError(f"jekyll build failed: {_last_line(done)} (run `{' '.join(args)}` to see it all)")


def _fetch_tip(url: str, branch: str, work: Path) -> str | None:
    """The branch's current sha on the remote, fetched into `work`; None if it does not exist yet."""
    ref = f"refs/heads/{branch}"
    listed = _git(["ls-remote", url, ref], work, hint=f"check the remote {url} exists and you can read it")
    if not listed:
        return None
    _git(["fetch", "-q", "--depth=1", url, ref], work)  # only the tip: old galleries can be large
    return _git(["rev-parse", "FETCH_HEAD"], work)


def _toplevel(base: Path) -> Path | None:
    """The user's repository root, if `base` is inside one (only needed to resolve a remote name)."""
    done = _run(["git", "rev-parse", "--show-toplevel"], base)
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def _remote_url(remote: str, toplevel: Path | None) -> str:
    """A remote's URL if `remote` names one, else `remote` itself as a URL or path.

    Local paths are made absolute because git runs in a temporary folder.
    """
    if toplevel is not None:
        done = _run(["git", "remote", "get-url", remote], toplevel)
        if done.returncode == 0:
            return _absolute(done.stdout.strip(), toplevel)
    if re.fullmatch(r"[\w.-]+", remote) and not Path(remote).exists():  # a name, but no such remote
        where = f"the repository {toplevel}" if toplevel else "the current folder (not a git repository)"
        raise GalleryError(
            f"'{remote}' is neither a remote of {where} nor a URL or path: "
            "give a remote's name or a URL such as git@github.com:user/repo.git"
        )
    return _absolute(remote, Path.cwd())


def _absolute(url: str, base: Path) -> str:
    """Resolve a relative local path against `base`; URLs and scp-like `host:path` stay as they are."""
    if "://" in url or re.match(r"^[^/]+:", url) or Path(url).is_absolute():
        return url
    return str((base / url).resolve())


def _config(key: str, toplevel: Path | None) -> str:
    """The user's git setting (repository, then global), or '' when unset."""
    return _run(["git", "config", key], toplevel or Path.cwd()).stdout.strip()


def _git(args: list[str], cwd: Path, hint: str = "fix that and publish again") -> str:
    """Run git; on failure a GalleryError with git's own last words and what to do."""
    done = _run(["git", *args], cwd)
    if done.returncode != 0:
        command = next(a for a in args if not a.startswith("-") and "=" not in a)
        raise GalleryError(f"git {command} failed: {_last_line(done)}; {hint}")
    return done.stdout.strip()


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARS}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def _last_line(done: subprocess.CompletedProcess) -> str:
    """What went wrong, in git's or Jekyll's words: the first 'fatal:'/'error:' line (git's last line is
    often the tail of a sentence, such as 'and the repository exists.'), else the last line."""
    lines = [
        line.strip()
        for line in (done.stderr or done.stdout).splitlines()
        if line.strip() and not line.startswith("hint:")
    ]
    errors = [line for line in lines if line.lower().startswith(("fatal:", "error:"))]
    return errors[0] if errors else lines[-1] if lines else f"exit status {done.returncode}"
