"""Run taskbox as an unprivileged user: the deployment most users have (issue 11).

As root the runner drops every worker to uid 65534; in the official runners image,
most Docker set-ups and every sensible Kubernetes pod it runs as a non-root user,
and the workers share that uid. The security suites run both ways. This module
makes the second way possible on a root CI machine:

* :func:`ensure_user` creates a system user ``tb11runner`` (once; names made
  system-wide by the test suite carry the ``tb11`` prefix);
* :func:`make_venv` builds a venv from a world-readable interpreter (Debian's
  ``/usr/bin/python3``; root's own Python may live in a 0700 home) in a directory
  of its own, in which taskbox and its runtime dependencies import. When the
  current site-packages are readable by that user a ``.pth`` line points at them;
  otherwise the runtime distributions (and the taskbox sources) are copied in.

Stdlib only, so the scorecard can import it before taskbox.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

__all__ = ["USER", "NonRootUnavailable", "ensure_user", "make_venv", "readable_by"]

USER = "tb11runner"
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
REPO = Path(__file__).resolve().parents[1]


class NonRootUnavailable(RuntimeError):
    """This machine cannot run taskbox as an unprivileged user (the reason says why)."""


def ensure_user(name: str = USER) -> tuple[int, int]:
    """(uid, gid) of ``name``, created as a system user without a home if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise NonRootUnavailable(f"user {name!r} does not exist and we are not root") \
                from None
        useradd = shutil.which("useradd")
        if useradd is None:
            raise NonRootUnavailable("useradd is not installed") from None
        done = subprocess.run([useradd, "--system", "--no-create-home", "--user-group",
                               "--shell", "/usr/sbin/nologin", name],
                              capture_output=True, text=True, check=False)
        if done.returncode not in (0, 9):  # 9: created meanwhile by a parallel run
            raise NonRootUnavailable(f"useradd {name} failed: {done.stderr.strip()}") \
                from None
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def readable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid`` can reach and read ``path`` (every directory on the way)."""
    current = Path("/")
    for part in path.resolve().parts[1:]:
        current = current / part
        try:
            st = current.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            shift = 6
        elif st.st_gid == gid:
            shift = 3
        else:
            shift = 0
        need = (stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)) << shift
        if st.st_mode & need != need:
            return False
    return True


def _system_python(uid: int, gid: int) -> str:
    for candidate in SYSTEM_PYTHONS:
        path = Path(candidate)
        if path.exists() and readable_by(path.resolve(), uid, gid):
            version = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, check=False).stdout.strip()
            if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
                return candidate
    raise NonRootUnavailable(
        f"no world-readable python{sys.version_info[0]}.{sys.version_info[1]} "
        f"among {', '.join(SYSTEM_PYTHONS)}")


def _runtime_distributions() -> list[metadata.Distribution]:
    """taskbox's runtime dependencies, transitively (extras and markers skipped)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [req for req in (metadata.requires("taskbox") or []) if "extra ==" not in req]
    while todo:
        match = re.match(r"[A-Za-z0-9_.-]+", todo.pop())
        if match is None:
            continue
        name = match.group(0).lower().replace("_", "-")
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
        todo += [r for r in (dist.requires or []) if "extra ==" not in r]
    return list(found.values())


def make_venv(dest: Path, uid: int, gid: int) -> Path:
    """A venv under ``dest`` where ``uid`` can import taskbox; returns its python.

    Raises:
        NonRootUnavailable: no usable interpreter, or the venv cannot be built.
    """
    python = _system_python(uid, gid)
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([python, "-m", "venv", "--without-pip", str(dest)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NonRootUnavailable(f"{python} -m venv failed: {done.stderr.strip()[-300:]}")
    site = Path(subprocess.run(
        [str(dest / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    ours = Path(sysconfig.get_paths()["purelib"])
    sources = [REPO / "src", REPO / "sandbox"]
    if readable_by(ours, uid, gid) and all(readable_by(p, uid, gid) for p in sources):
        # addsitedir also runs the .pth files there (the editable install's finder).
        (site / "taskbox-parent.pth").write_text(f"import site; site.addsitedir({str(ours)!r})\n")
    else:
        for dist in _runtime_distributions():
            for file in dist.files or []:
                source = Path(str(dist.locate_file(file)))
                target = site / file
                if source.is_file() and ".." not in file.parts:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
        shutil.copytree(REPO / "src" / "taskbox", site / "taskbox", dirs_exist_ok=True)
        shutil.copytree(REPO / "sandbox", site / "taskbox_sandbox", dirs_exist_ok=True)
    for path in [dest, *dest.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            path.chmod(mode | stat.S_IROTH | stat.S_IRGRP
                       | (stat.S_IXOTH | stat.S_IXGRP if stat.S_ISDIR(mode) else 0))
    check = subprocess.run(
        [str(dest / "bin" / "python"), "-I", "-c", "import taskbox.cli, taskbox_sandbox.zygote"],
        capture_output=True, text=True, check=False, user=uid, group=gid, extra_groups=[],
        cwd="/")
    if check.returncode != 0:
        raise NonRootUnavailable(f"taskbox does not import for uid {uid} in {dest}: "
                                 f"{check.stderr.strip()[-500:]}")
    return dest / "bin" / "python"
