"""Developer sessions: ``nox -s tests``, ``nox -s tests_min``, ``nox -s lint``, ``nox -s bench``.

Each session runs in the project environment that ``uv`` builds from ``uv.lock`` (``--locked``
fails if the lock is out of date), so tests, lint and benchmarks see the pinned torch 2.13 /
torchvision 0.28 pair. See README.md for why plain pip is not used.
"""

import os
import re
import sys
from pathlib import Path

import nox

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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
def tests_fast(session: nox.Session) -> None:
    """The suite without the ``slow`` tests (real servers, subprocesses, DDP, kills): the
    edit-test loop of a developer. CI runs the whole suite (``tests``)."""
    parallel = ["-n", "auto", "--maxprocesses", "4", "--dist", "loadfile"]
    session.run(UV, "run", "--locked", "pytest", *parallel, "-m", "not slow", *session.posargs)


#: the packages whose lowest allowed versions ``tests_min`` installs (read from pyproject.toml)
MINIMUM_OF = ("torch", "torchvision", "lightning", "torchmetrics", "jsonargparse")
#: what it runs there: fit -> predict -> export -> serve on tabular, text and image data, the
#: networks without Lightning, the checkpoints of earlier releases, and the private behaviours
#: of Lightning and jsonargparse dlzoo relies on (``dlzoo.cli.private``)
MINIMUM_TESTS = (
    "tests/test_serve.py",
    "tests/test_networks.py",
    "tests/test_export.py",
    "tests/test_legacy.py",
    "tests/test_private_apis.py",
)


def lowest_versions() -> list[str]:
    """``name==lower bound`` of each of :data:`MINIMUM_OF`, as pyproject.toml declares it."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*>=\s*([^,;\s]+)", requirement)
        if match and match[1] in MINIMUM_OF:
            pins.append(f"{match[1]}{match[2] or ''}=={match[3]}")
    missing = set(MINIMUM_OF) - {re.split(r"[\[=]", pin)[0] for pin in pins}
    if missing:
        raise ValueError(f"pyproject.toml declares no lower bound for {sorted(missing)}")
    return pins


@nox.session(venv_backend="none")
def tests_min(session: nox.Session) -> None:
    """The lowest allowed torch, torchvision, lightning, torchmetrics and jsonargparse (the
    other dependencies at their newest allowed), in ``.nox/tests_min``, and the tests of
    :data:`MINIMUM_TESTS` there. The first run downloads torch (~3 GB with its CUDA libraries)."""
    env = Path(".nox") / "tests_min"
    python = str(env / "bin" / "python")
    if not (env / "bin" / "python").exists():
        version = f"{sys.version_info.major}.{sys.version_info.minor}"  # nox's own Python
        session.run(UV, "venv", "--python", version, str(env))
    pins = lowest_versions()
    session.log("lowest versions: " + ", ".join(pins))
    tools = ["pytest>=8", "pytest-xdist>=3.6", "optuna>=4.9,<5", "optuna-integration>=4.9,<5"]
    # --no-config: not the lock's torch pin (pyproject's [tool.uv] constraint-dependencies)
    install = [UV, "pip", "install", "--no-config", "--compile-bytecode", "--python", python]
    session.run(*install, "-e", ".", *pins, *tools)
    session.run(
        python, "-c", "import torch, lightning; print(torch.__version__, lightning.__version__)"
    )
    parallel = ["-n", "auto", "--maxprocesses", "4", "--dist", "loadfile"]
    session.run(python, "-m", "pytest", *parallel, *MINIMUM_TESTS, *session.posargs)


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
        "bench_tabm.py",
        "bench_vision.py",
        "bench_text.py",
        "bench_text_encoder.py",
        "bench_deploy.py",
        "bench_sweep.py",
        "bench_layout.py",
        "bench_pretrained.py",
    ):
        session.run(UV, "run", "--locked", "python", f"benchmarks/{script}", *session.posargs)
