"""Push a built site to a branch of a git remote, for GitHub Pages' "deploy from a branch".

The site is built with `jekyll build` and committed in a throwaway repository inside a temporary
folder, so the user's working tree, index and current branch are never touched. The new commit is
a child of the branch's tip, so history is kept and the push is a plain fast-forward (no force).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from gallery.errors import GalleryError

FALLBACK_NAME, FALLBACK_EMAIL = "prompt-gallery", "prompt-gallery@localhost"
# Set inside git hooks; they would point every git command, even in the temporary repository, at the user's.
_REPO_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


def github_project_baseurl(url: str) -> str | None:
    """'/repo' for a GitHub project site's remote (github.com/user/repo); None for user.github.io or others."""
    match = re.search(r"github\.com[:/]([^/]+)/([^/]+?)(?:\.git)?/?$", url)
    if not match or match.group(2).lower() == f"{match.group(1).lower()}.github.io":
        return None
    return f"/{match.group(2)}"


def publish(site_dir: Path, *, remote: str = "origin", branch: str = "gh-pages",
            repo_dir: Path | None = None, baseurl: str | None = None,
            message: str | None = None, log=print) -> str:
    """Build `site_dir` with Jekyll and push it to `branch` of `remote`; return the branch's sha."""
    site_dir = Path(site_dir)
    if not (site_dir / "_config.yml").is_file():
        raise GalleryError(f"no Jekyll site at {site_dir} (no _config.yml): run `gallery site` first")
    jekyll = shutil.which("jekyll")
    if jekyll is None:
        raise GalleryError("publishing needs jekyll: install it (apt-get install jekyll, or gem install "
                           "jekyll) or deploy with the GitHub Actions workflow .github/workflows/pages.yml")
    base = Path(repo_dir) if repo_dir is not None else Path.cwd()
    toplevel = _toplevel(base)
    url = _remote_url(remote, toplevel)
    if baseurl is None:
        baseurl = github_project_baseurl(url)
    identity = ["-c", f"user.name={_config('user.name', toplevel) or FALLBACK_NAME}",
                "-c", f"user.email={_config('user.email', toplevel) or FALLBACK_EMAIL}"]
    with tempfile.TemporaryDirectory(prefix="gallery-publish-") as tmp:
        built, work = Path(tmp) / "built", Path(tmp) / "repo"
        log(f"Building {site_dir} with jekyll" + (f" (baseurl {baseurl})" if baseurl else ""))
        _jekyll_build(jekyll, site_dir, built, baseurl)
        _git(["init", "-q", str(work)], Path(tmp))
        parent = _fetch_tip(url, branch, work)
        if parent:
            _git(["update-ref", "HEAD", parent], work)  # the new commit becomes the tip's child
        shutil.copytree(built, work, dirs_exist_ok=True)
        (work / ".nojekyll").touch()  # Pages serves the files as they are, without its own Jekyll
        _git(["add", "-A"], work)
        if parent and _run(["git", "diff", "--cached", "--quiet", "HEAD"], work).returncode == 0:
            log(f"{branch} on {url} is already up to date ({parent[:12]})")
            return parent
        text = message or f"Publish prompt gallery {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
        _git([*identity, "commit", "-q", "-m", text], work)
        sha = _git(["rev-parse", "HEAD"], work)
        _git(["push", "-q", url, f"HEAD:refs/heads/{branch}"], work,
             hint=f"check that you can push to {url} and that nobody else pushed {branch} meanwhile, then try again")
    log(f"Published {sha[:12]} to {branch} on {url}")
    return sha


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
        raise GalleryError(f"'{remote}' is neither a remote of {where} nor a URL or path: "
                           "give a remote's name or a URL such as git@github.com:user/repo.git")
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
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()
             if line.strip() and not line.startswith("hint:")]
    return lines[-1] if lines else f"exit status {done.returncode}"
