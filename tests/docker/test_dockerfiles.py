"""The Dockerfiles under docker/, checked without a Docker engine.

- every image's ENTRYPOINT + CMD is a `pipeserve` subcommand the CLI accepts;
- images are multi-stage, run as the non-root user the operator's pods run as, and install
  nothing in their final stage but runtime libraries (no compilers, no pip installs);
- each image's `pip install` resolves in a fresh virtualenv for the image's Python and Linux
  (`pip install --dry-run`: resolution from the package index, nothing installed). This one
  check asks PyPI: the images' Python (3.12 for the CUDA image), their manylinux tags and
  onnxruntime-gpu are not what this machine has installed, so no local wheel or installed
  distribution can say whether their pins have wheels; only metadata is fetched, no wheel;
- what each image's build stage copies builds into a wheel (offline) that holds every module
  and data file of the package and the `pipeserve` command the ENTRYPOINT runs;
- the example image extends a base image and copies files that exist.

paddlepaddle-gpu 3.x is published only on Paddle's package index, not on PyPI; its line is
checked for pinning the same Paddle as the CPU image and an index of the base image's CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
import yaml

from pipeserve import cli
from pipeserve.operator import workloads

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BASE_IMAGES = sorted(DOCKER.glob("*.Dockerfile"))
EXAMPLES = sorted((DOCKER / "examples").glob("*.Dockerfile"))
BUILD_TOOLS = re.compile(r"^(gcc|g\+\+|cpp|make|cmake|build-essential|git|.*-dev|python3-pip|clang)$")
PADDLE_INDEX = re.compile(r"^https://www\.paddlepaddle\.org\.cn/packages/stable/cu(?P<cuda>\d+)/$")
#: manylinux tags that the images' glibc (Debian 12: 2.36, Ubuntu 24.04: 2.39) can load.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclasses.dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]]

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclasses.dataclass
class Dockerfile:
    path: pathlib.Path
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m[1] or m[2], m[0]), text)


def parse(path: pathlib.Path) -> Dockerfile:
    """Instructions with continuation lines joined; global ARG defaults; one Stage per FROM."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    dockerfile = Dockerfile(path, {}, [])
    for keyword, args in instructions:
        if keyword == "FROM":
            dockerfile.stages.append(Stage(dockerfile.expand(args.split()[0]), []))
        elif keyword == "ARG" and not dockerfile.stages:
            name, _, default = args.partition("=")
            dockerfile.args[name] = default.strip('"')
        elif dockerfile.stages:
            dockerfile.stages[-1].instructions.append((keyword, args))
    return dockerfile


def documented_tag(dockerfile: Dockerfile) -> str:
    """The image name the file's header documents (`docker build ... -t NAME .`)."""
    (tag,) = re.findall(r"^#\s+docker build .* -t (\S+) \.$", dockerfile.path.read_text(), re.M)
    return tag


def exec_form(args: str | None) -> list[str]:
    assert args is not None and args.startswith("["), "use the exec form: a JSON array"
    argv: list[str] = json.loads(args)
    return argv


def cli_parser() -> argparse.ArgumentParser:
    """The parser `pipeserve` builds, from the same command modules."""
    parser = argparse.ArgumentParser(prog="pipeserve", exit_on_error=False)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in cli.COMMANDS:
        command.add_arguments(subparsers.add_parser(command.NAME, help=command.HELP))
    return parser


def cli_errors(argv: list[str]) -> str:
    """What the CLI says about these arguments: "" when it accepts them (or prints --help)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli_parser().parse_args(argv)
        except SystemExit as exit_:
            return "" if exit_.code == 0 else stderr.getvalue()
        except argparse.ArgumentError as exc:
            return str(exc)
    return ""


def pip_installs(stage: Stage, dockerfile: Dockerfile) -> list[list[str]]:
    """The arguments of every `pip install` in a stage's RUN instructions, variables expanded."""
    found = []
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(dockerfile.expand(command))
            for i, word in enumerate(words[:-1]):
                if word.endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2 :])
    return found


def project_requirements(target: str) -> list[str]:
    """What installing the project (".[extra,...]") asks for: its dependencies and extras'."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
    assert extras is not None, f"{target}: expected the project itself, as . or .[extras]"
    requirements = list(project["dependencies"])
    for extra in filter(None, (extras[1] or "").split(",")):
        requirements += project["optional-dependencies"][extra]
    return requirements


@pytest.mark.parametrize("path", BASE_IMAGES, ids=lambda p: p.name)
def test_the_entrypoint_and_command_are_a_real_pipeserve_subcommand(path: pathlib.Path) -> None:
    final = parse(path).final
    entrypoint, command = exec_form(final.last("ENTRYPOINT")), exec_form(final.last("CMD"))
    assert entrypoint == ["pipeserve"]
    assert command[0] in {c.NAME for c in cli.COMMANDS}
    assert cli_errors(command) == ""


def test_the_cli_check_catches_a_bad_command() -> None:
    assert "invalid choice: 'serve'" in cli_errors(["serve"])
    assert "the following arguments are required: --graph" in cli_errors(["gateway", "--config", "c.yml"])
    assert "unrecognized arguments: --bogus" in cli_errors(["operator", "--all-namespaces", "--bogus"])


@pytest.mark.parametrize("path", BASE_IMAGES, ids=lambda p: p.name)
def test_images_are_multi_stage_and_run_as_the_pods_non_root_user(path: pathlib.Path) -> None:
    dockerfile = parse(path)
    assert len(dockerfile.stages) >= 2, "build in one stage, copy the result into a clean one"
    final = dockerfile.final
    user = final.last("USER")
    assert user is not None, "the final stage must set a USER"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == workloads.DEFAULT_RUN_AS_USER != 0
    assert any("--from=build" in copy for copy in final.all("COPY"))
    assert pip_installs(final, dockerfile) == [], "install Python packages in the build stage"
    installed = [
        package
        for run in final.all("RUN")
        for packages in re.findall(r"apt-get install ((?:[^&;])*)", run)
        for package in packages.split()
        if not package.startswith("-")
    ]
    assert [p for p in installed if BUILD_TOOLS.match(p)] == [], "no build tools in the final stage"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_image_extends_a_base_image_with_files_that_exist(path: pathlib.Path) -> None:
    dockerfile = parse(path)
    assert dockerfile.stages[0].base in {documented_tag(parse(base)) for base in BASE_IMAGES}
    user = dockerfile.final.last("USER")
    assert user is None or user.split(":")[0] not in {"0", "root"}
    for copy in dockerfile.final.all("COPY"):
        *sources, _ = shlex.split(copy)
        for source in sources:
            assert (ROOT / source).is_file(), f"{path.name}: COPY {source}: no such file"
    example = yaml.safe_load((ROOT / "examples" / "imdb_ensemble" / "pipelineservice.yaml").read_text())
    assert example["spec"]["image"] == documented_tag(dockerfile)
    assert dockerfile.final.last("WORKDIR") == example["spec"]["workingDir"]


def test_the_operator_chart_runs_the_operator_image() -> None:
    values = yaml.safe_load((ROOT / "charts" / "pipeserve" / "values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "charts" / "pipeserve" / "Chart.yaml").read_text())
    tag = documented_tag(parse(DOCKER / "operator.Dockerfile"))
    assert f"{values['image']['repository']}:{chart['appVersion']}" == tag


def test_the_gpu_image_takes_the_cpu_images_paddle_from_the_index_of_its_cuda() -> None:
    dockerfile = parse(DOCKER / "opservice-gpu.Dockerfile")
    (paddle_line,) = [args for args in pip_installs(dockerfile.stages[0], dockerfile) if "--extra-index-url" in args]
    index = PADDLE_INDEX.match(paddle_line[paddle_line.index("--extra-index-url") + 1])
    assert index is not None
    cuda = re.search(r":(\d+)\.(\d+)\.\d+-cudnn", dockerfile.stages[0].base)
    assert cuda is not None and index["cuda"] == cuda[1] + cuda[2]
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (cpu_paddle,) = optional["paddle"]
    assert cpu_paddle.startswith("paddlepaddle==")
    gpu_paddle = cpu_paddle.replace("paddlepaddle==", "paddlepaddle-gpu==")
    assert [arg for arg in paddle_line if arg.startswith("paddlepaddle")] == [gpu_paddle]


def test_every_images_pip_install_resolves_in_a_fresh_virtualenv(tmp_path: pathlib.Path) -> None:
    # One resolution per Python version, of the union of those images' requirements: a set
    # that resolves has every subset resolve too, and the index round trips dominate the time.
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for path in BASE_IMAGES:
        dockerfile = parse(path)
        names, requirements = groups.setdefault(dockerfile.args["PYTHON_VERSION"], ([], []))
        names.append(path.name)
        for args in pip_installs(dockerfile.stages[0], dockerfile):
            if "--extra-index-url" in args:
                continue  # Paddle's own index: see the test above
            for arg in args:
                requirements += project_requirements(arg) if arg.startswith(".") else [arg]
    resolutions = {}
    for python, (names, requirements) in groups.items():
        venv, report = tmp_path / f"py{python}", tmp_path / f"py{python}.json"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        command = [
            sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--dry-run",
            "--ignore-installed", "--quiet", "--report", str(report), "--only-binary=:all:", "--python-version", python,
            *[arg for platform in PLATFORMS for arg in ("--platform", platform)], *sorted(set(requirements)),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        resolutions[f"Python {python}: {', '.join(names)}"] = (process, report)
    failures = {}
    for images, (process, report) in resolutions.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            failures[images] = output
            continue
        resolved = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
        assert {"grpcio", "kopf", "numpy", "opentelemetry-sdk"} <= resolved, images
    assert failures == {}
    assert len(resolutions) == 2  # Debian's Python 3.11 images, and the CUDA image's Ubuntu Python 3.12


def test_what_the_build_stage_copies_builds_the_whole_package_and_its_command(tmp_path: pathlib.Path) -> None:
    contexts = {tuple(parse(path).stages[0].all("COPY")) for path in BASE_IMAGES}
    assert len(contexts) == 1, "the images copy different sources: check each"
    (copies,) = contexts
    source = tmp_path / "src"
    for copy in copies:
        *sources, destination = shlex.split(copy)
        for name in sources:
            target = source / destination / (pathlib.Path(name).name if destination.endswith("/") else "")
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / name, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("pipeserve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    package = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "pipeserve").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyi"}
    }
    assert package - names == set(), "files of the package the image would not have"
    assert re.search(r"^\[console_scripts\]\npipeserve = pipeserve\.cli:main$", scripts, re.M), scripts
