"""The local GitOps adapter against a real git repository: the port's contract.

The effect log of the driver is the git history itself: a change is applied
at most once per idempotency key, whatever happens around it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.gitops import Change, Commit, GitOpsRepo, LocalGitRepo


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], capture_output=True, text=True, check=True
    ).stdout


def change(key: str, files: dict[str, str | None], replace: tuple[str, ...] = ()) -> Change:
    return Change(
        summary=f"change {key}",
        run_id=f"run-{key}",
        actor="alice@example.com",
        idempotency_key=key,
        files=files,
        replace=replace,
    )


@pytest.fixture
def repo(tmp_path: Path) -> LocalGitRepo:
    return LocalGitRepo(tmp_path / "gitops")


def test_the_repository_is_created_on_first_use(repo: LocalGitRepo) -> None:
    assert not repo.path.exists()
    assert repo.read() == {}
    head = repo.head()
    assert git(repo.path, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git(repo.path, "rev-parse", "main").strip() == head
    assert git(repo.path, "symbolic-ref", "HEAD").strip() == "refs/heads/main"


def test_a_change_is_one_commit_with_its_run_actor_and_key(repo: LocalGitRepo) -> None:
    port: GitOpsRepo = repo
    done = port.apply(change("k1", {"a/x.yaml": "x: 1\n", "b.yaml": "b\n"}))
    assert done.changed
    assert not done.replayed
    assert git(repo.path, "rev-parse", "HEAD").strip() == done.sha
    message = git(repo.path, "log", "-1", "--format=%B")
    assert "run-k1" in message
    assert "alice@example.com" in message
    trailers = git(repo.path, "log", "-1", "--format=%(trailers:only,unfold)")
    assert "Tenantops-Idempotency-Key: k1" in trailers
    assert "Tenantops-Run: run-k1" in trailers
    assert port.read() == {"a/x.yaml": "x: 1\n", "b.yaml": "b\n"}
    assert port.read("a") == {"a/x.yaml": "x: 1\n"}
    assert port.read("a/x.yaml") == {"a/x.yaml": "x: 1\n"}


def test_the_same_key_again_returns_the_first_commit_and_commits_nothing(
    repo: LocalGitRepo,
) -> None:
    first = repo.apply(change("k1", {"a.yaml": "one\n"}))
    # Even with different content: the key says this effect already happened.
    again = repo.apply(change("k1", {"a.yaml": "two\n"}))
    assert again == Commit(sha=first.sha, changed=True, replayed=True)
    assert repo.read() == {"a.yaml": "one\n"}
    assert repo.commits_with_key("k1") == [first.sha]


def test_an_unchanged_tree_makes_no_commit(repo: LocalGitRepo) -> None:
    first = repo.apply(change("k1", {"a.yaml": "one\n"}))
    same = repo.apply(change("k2", {"a.yaml": "one\n"}))
    assert same == Commit(sha=first.sha, changed=False)
    assert repo.commits_with_key("k2") == []
    assert len(repo.log()) == 2  # the initial commit and k1


def test_a_key_is_matched_whole_not_as_a_prefix(repo: LocalGitRepo) -> None:
    repo.apply(change("run/step-10", {"a.yaml": "one\n"}))
    assert repo.commits_with_key("run/step-1") == []
    second = repo.apply(change("run/step-1", {"a.yaml": "two\n"}))
    assert second.changed
    assert not second.replayed


def test_a_revision_contains_itself_and_its_ancestors_only(
    repo: LocalGitRepo, tmp_path: Path
) -> None:
    assert repo.contains("a" * 40, "b" * 40) is False  # no repository yet: nothing is known
    first = repo.apply(change("k1", {"a.yaml": "one\n"})).sha
    second = repo.apply(change("k2", {"a.yaml": "two\n"})).sha
    other = LocalGitRepo(tmp_path / "other").apply(change("k3", {"x": "x\n"})).sha
    port: GitOpsRepo = repo

    assert port.contains(second, first)
    assert port.contains(first, first)
    assert not port.contains(first, second)  # an older deployment does not hold a newer commit
    assert not port.contains(other, first)
    assert not port.contains(second, other)
    assert repo.has_commit(second)
    assert not repo.has_commit(other)
    # Only object ids reach git: nothing that could read as an option or a revision range.
    for odd in ("--all", f"{first}..{second}", "HEAD", ""):
        assert not repo.contains(second, odd)
        assert not repo.contains(odd, first)
        assert not repo.has_commit(odd)


def test_replace_leaves_exactly_the_new_files_and_deletes_the_rest(repo: LocalGitRepo) -> None:
    repo.apply(change("k1", {"t/a.yaml": "a\n", "t/b.yaml": "b\n", "keep.yaml": "k\n"}))
    repo.apply(change("k2", {"t/a.yaml": "a2\n"}, replace=("t",)))
    assert repo.read() == {"t/a.yaml": "a2\n", "keep.yaml": "k\n"}
    removed = repo.apply(change("k3", {"keep.yaml": None}, replace=("t", "never-there")))
    assert removed.changed
    assert repo.read() == {}


def test_deleting_what_is_not_there_is_no_change(repo: LocalGitRepo) -> None:
    head = repo.head()
    done = repo.apply(change("k1", {"ghost.yaml": None}, replace=("nothing",)))
    assert done == Commit(sha=head, changed=False)


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../outside.yaml", ".git/config", "a/../../b", "a b.yaml", "a\nb"]
)
def test_a_path_outside_the_repository_is_refused(repo: LocalGitRepo, path: str) -> None:
    with pytest.raises(DriverError) as caught:
        repo.apply(change("k1", {path: "x\n"}))
    assert caught.value.retry is Retry.PERMANENT
    assert repo.log() == []


def test_what_a_killed_writer_left_behind_is_cleared_before_the_next_commit(
    repo: LocalGitRepo, tmp_path: Path
) -> None:
    repo.apply(change("k1", {"t/a.yaml": "a\n"}))
    # A writer killed mid-commit leaves git's lock on the branch and HEAD.
    (repo.path / "refs" / "heads" / "main.lock").write_text("")
    (repo.path / "HEAD.lock").write_text("")
    done = repo.apply(change("k2", {"u/b.yaml": "b\n"}))
    assert done.changed
    assert repo.read() == {"t/a.yaml": "a\n", "u/b.yaml": "b\n"}
    git(repo.path, "fsck", "--strict")


def test_a_stream_cut_short_commits_nothing(repo: LocalGitRepo) -> None:
    head = repo.head()
    # What a writer killed half-way through its fast-import would have sent.
    cut = subprocess.run(
        ["git", f"--git-dir={repo.path}", "fast-import", "--quiet", "--done"],
        input=b"commit refs/heads/main\ncommitter x <x@x> 0 +0000\ndata 2\nhi\n"
        + f"from {head}\nM 100644 inline half.yaml\ndata 4\nha\n".encode(),
        capture_output=True,
        check=False,
    )
    assert cut.returncode != 0
    assert repo.head() == head
    assert repo.read() == {}


def test_the_repository_may_live_inside_another_repository(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    inner = LocalGitRepo(outer / "data" / "gitops")
    inner.apply(change("k1", {"a.yaml": "a\n"}))
    assert inner.read() == {"a.yaml": "a\n"}
    outer_log = subprocess.run(
        ["git", "-C", str(outer), "log", "--oneline"], capture_output=True, text=True, check=False
    )
    assert outer_log.stdout == ""


def test_git_missing_needs_a_human(tmp_path: Path) -> None:
    broken = LocalGitRepo(tmp_path / "gitops", git="/nonexistent/git")
    with pytest.raises(DriverError) as caught:
        broken.apply(change("k1", {"a.yaml": "a\n"}))
    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert not caught.value.retriable


def test_concurrent_writers_each_commit_once_and_the_repository_stays_consistent(
    repo: LocalGitRepo,
) -> None:
    writers, rounds = 6, 5
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def write(w: int) -> None:
        # Each writer has its own adapter, as separate workers would.
        mine = LocalGitRepo(repo.path)
        barrier.wait()
        try:
            for r in range(rounds):
                for _attempt in range(2):  # a re-executed step: same key twice
                    mine.apply(change(f"w{w}/r{r}", {f"t{w}/f.yaml": f"{r}\n"}, replace=(f"t{w}",)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for w in range(writers):
        for r in range(rounds):
            assert len(repo.commits_with_key(f"w{w}/r{r}")) == 1
    assert len(repo.log()) == 1 + writers * rounds
    assert repo.read() == {f"t{w}/f.yaml": f"{rounds - 1}\n" for w in range(writers)}
    git(repo.path, "fsck", "--strict")


def test_concurrent_processes_serialise_on_the_repository_lock(repo: LocalGitRepo) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from tenantops.drivers.gitops import Change, LocalGitRepo\n"
        "r = LocalGitRepo(Path(sys.argv[1])); p = sys.argv[2]\n"
        "for i in range(4):\n"
        "    for _ in range(2):\n"
        "        r.apply(Change(summary='s', run_id=p, actor='a', idempotency_key=f'{p}/{i}',\n"
        "                       files={f'{p}/f.yaml': f'{i}\\n'}, replace=(p,)))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(repo.path), f"p{n}"]) for n in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    for n in range(3):
        for i in range(4):
            assert len(repo.commits_with_key(f"p{n}/{i}")) == 1
    assert len(repo.log()) == 1 + 3 * 4
    git(repo.path, "fsck", "--strict")


WRITER = """
import sys
from pathlib import Path
from tenantops.drivers.gitops import Change, LocalGitRepo
repo = LocalGitRepo(Path(sys.argv[1]))
for i in range(int(sys.argv[2])):
    repo.apply(Change(summary=f"step {i}", run_id="run", actor="worker",
                      idempotency_key=f"run/step-{i}",
                      files={f"t{i % 3}/f.yaml": f"{i}\\n", "shared.yaml": f"{i}\\n"},
                      replace=(f"t{i % 3}",)))
"""


def test_a_writer_killed_at_any_moment_then_re_run_applies_each_key_once(
    repo: LocalGitRepo,
) -> None:
    steps = 40
    for kill_after in (1, 7, 19):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(repo.path), str(steps)])
        # Bounded wait until the child has committed some steps, then SIGKILL it
        # wherever it is: inside git, between steps, or holding the lock.
        for _ in range(2000):
            if len(repo.log()) > kill_after or child.poll() is not None:
                break
            threading.Event().wait(0.005)
        child.kill()
        child.wait(timeout=60)
    # The restarted worker re-executes every step, as after a crash.
    again = subprocess.run([sys.executable, "-c", WRITER, str(repo.path), str(steps)], check=False)
    assert again.returncode == 0
    for i in range(steps):
        assert len(repo.commits_with_key(f"run/step-{i}")) == 1
    assert repo.read("shared.yaml") == {"shared.yaml": f"{steps - 1}\n"}
    git(repo.path, "fsck", "--strict")
