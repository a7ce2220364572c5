"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s bench``.

Each session runs in the project environment that ``uv`` builds from ``uv.lock`` (``--locked``
fails if the lock is out of date), so tests, lint and benchmarks see the pinned torch 2.13 /
torchvision 0.28 pair. See README.md for why plain pip is not used.
"""

import os

import nox

# `uv run` exports its own path as $UV; fall back to PATH when nox is started some other way
UV = os.environ.get("UV", "uv")

nox.options.sessions = ["lint", "tests"]


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite, one pytest-xdist worker per core (at most 4), a test file per worker.

    A file stays on one worker so that its module fixtures (the killed runs, the servers) are
    built once. ``nox -s tests -- -n0 …`` runs serially, e.g. to debug one test.
    """
    parallel = ["-n", "auto", "--maxprocesses", "4", "--dist", "loadfile"]
    session.run(UV, "run", "--locked", "pytest", *parallel, *session.posargs)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.run(
        "uv", "run", "--locked", "ruff", "check", "src", "tests", "benchmarks", "noxfile.py"
    )
    session.run(
        "uv",
        "run",
        "--locked",
        "ruff",
        "format",
        "--check",
        "src",
        "tests",
        "benchmarks",
        "noxfile.py",
    )


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks on the real data in ../shared/data; rewrites their sections of BENCHMARKS.md.

    Tabular, vision and text, in that order (about 1.5 hours on 2 CPU cores). ``--reuse`` keeps
    the results each script saved under .bench/ and only reruns what is missing.
    """
    for script in (
        "bench_tabular.py",
        "bench_regression.py",
        "bench_vision.py",
        "bench_text.py",
        "bench_deploy.py",
        "bench_sweep.py",
        "bench_layout.py",
        "bench_pretrained.py",
    ):
        session.run(UV, "run", "--locked", "python", f"benchmarks/{script}", *session.posargs)
