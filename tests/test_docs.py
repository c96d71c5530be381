"""The documentation: the site builds with ``mkdocs build --strict`` and every example runs.

Every ```bash, ```console and ```python block of README.md and docs/*.md runs here,
page after page in the navigation's order, in one folder (later pages build on the
files earlier ones write), with CORPUS a synthetic EmoDB tree and MODEL a tiny random
wav2vec2. A block that cannot run here follows a ``<!-- no-run: reason -->`` comment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = ("bash", "console", "python")
# Spellings that would slip past the runner: write them as bash or python.
REFUSED = ("sh", "shell", "zsh", "py", "python3", "pycon")
FENCE = re.compile(r"^[ \t]*```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^[ \t]*```[ \t]*$", re.M | re.S)
NO_RUN = re.compile(r"<!-- no-run: (?P<reason>.*?\S)\s*-->")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page, and the reason it is not run (None: it runs)."""

    page: str
    line: int
    lang: str
    code: str
    no_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md, then the site's pages in the order of mkdocs.yml's nav."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = [next(iter(entry.values())) for entry in config["nav"]]
    return [ROOT / "README.md", *(ROOT / "docs" / name for name in nav)]


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of `path`, each with the no-run reason on the line before it."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NO_RUN.fullmatch(before.strip())
        line = text.count("\n", 0, match.start()) + 1
        code = match.group("code")
        found.append(
            Block(
                path.relative_to(root).as_posix(),
                line,
                match.group("lang"),
                code,
                marker and marker.group("reason"),
            )
        )
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    built = {path.relative_to(site).as_posix() for path in site.rglob("index.html")}
    expected = {"index.html"} | {f"{page.stem}/index.html" for page in pages()[2:]}
    assert expected <= built


def test_every_page_is_in_the_nav_and_every_block_is_checked():
    listed = {page.name for page in pages()[1:]}
    assert listed == {page.name for page in (ROOT / "docs").glob("*.md")}
    found = all_blocks()
    assert not [b.where for b in found if b.lang in REFUSED], "write these as bash or python"
    assert not [b.where for b in found if b.no_run and b.lang not in RUNNABLE], (
        "a no-run marker before a block that never runs"
    )
    lines = (line.strip() for page in pages() for line in page.read_text().splitlines())
    markers = sum(1 for line in lines if NO_RUN.fullmatch(line))
    assert markers == sum(1 for b in found if b.no_run), (
        "a no-run marker that is not right before a block"
    )
    runnable = [b for b in found if b.lang in RUNNABLE]
    assert len([b for b in runnable if not b.no_run]) >= 15
    assert all(b.code.strip() for b in runnable)


def test_blocks_parse_markers_and_indented_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- no-run: needs real weights -->\n```bash\nser demo\n```\n\n"
        "- item\n\n  ```python\n  print(1)\n  ```\n"
    )
    first, second = blocks(page, root=tmp_path)
    assert (first.lang, first.no_run, first.code) == ("bash", "needs real weights", "ser demo\n")
    assert (second.lang, second.no_run, second.line) == ("python", None, 8)
    assert console_commands("$ ser corpora\nemodb ...\n$ ser cache ls cache\n") == (
        "ser corpora\nser cache ls cache"
    )


@pytest.mark.slow
def test_every_unmarked_example_runs(tmp_path, monkeypatch, ser_shim):
    env = example_env(tmp_path, ser_shim)
    work = tmp_path / "work"
    work.mkdir()
    ran = 0
    for block in (b for b in all_blocks() if b.lang in RUNNABLE and not b.no_run):
        code = textwrap.dedent(block.code)
        start = time.perf_counter()
        if block.lang == "python":
            run_python(code, block, work, env, monkeypatch)
        else:
            run_shell(console_commands(code) if block.lang == "console" else code, block, work, env)
        print(f"{block.where}: {time.perf_counter() - start:.1f} s")  # shown with pytest -s
        ran += 1
    assert ran >= 15
    assert (work / "report" / "index.html").is_file() and (work / "predictions.csv").is_file()


def example_env(tmp_path: Path, ser_shim: Path) -> dict[str, str]:
    """CORPUS (EmoDB names over synthetic speech of 10 speakers), MODEL and `ser` on PATH."""
    from ssl_ser.testing import emodb
    from ssl_ser.testing.models import save_waveform_model

    corpus = tmp_path / "emodb"
    emodb.make_speech_tree(corpus)
    # Named like the hub model, so that the pages' cache paths (cache/wav2vec2-base-*)
    # hold for it too; its random-weights marker makes reports call it untrained.
    model = save_waveform_model("wav2vec2-group", tmp_path / "models" / "wav2vec2-base")
    return {
        **os.environ,
        "CORPUS": str(corpus),
        "MODEL": str(model),
        "PATH": f"{ser_shim.parent}{os.pathsep}{os.environ['PATH']}",
    }


# `ser` on PATH hands its arguments, folder, environment and stdio to a server that
# imported the toolkit and its libraries once and forks a child per command: the
# same click entry point, without paying ~3-10 s of imports for each of ~40 commands.
CLIENT = """import json, os, socket, sys
conn = socket.socket(socket.AF_UNIX)
conn.connect({address!r})
request = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(conn, [json.dumps(request).encode() + b"\\n"], [0, 1, 2])
sys.exit(int(conn.makefile().readline()))
"""
PRELOAD = (
    "torch",
    "transformers",
    "ssl_ser.cli.prepare",
    "ssl_ser.cli.extract",
    "ssl_ser.cli.cache",
    "ssl_ser.cli.classify",
    "ssl_ser.cli.finetune",
    "ssl_ser.cli.export",
    "ssl_ser.cli.predict",
    "ssl_ser.cli.bench_inference",
    "ssl_ser.cli.report",
    "ssl_ser.cli.compare",
    "ssl_ser.cli.pipelines",
    "ssl_ser.extract.runner",
    "ssl_ser.classify.sweep",
    "ssl_ser.finetune.run",
    "ssl_ser.predict.predictor",
    "ssl_ser.report",
    "matplotlib.pyplot",
)


def serve(address: str) -> None:
    """Import once, then run each request's `ser` command in a forked child."""
    import importlib
    import json
    import socket
    import traceback

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `ser` sets it before torch loads
    for module in PRELOAD:
        importlib.import_module(module)
    transformers = sys.modules["transformers"]
    transformers.Wav2Vec2Model, transformers.AutoModel  # noqa: B018 (lazy modules: load them)
    from ssl_ser.cli.main import cli

    server = socket.socket(socket.AF_UNIX)
    server.bind(address)
    server.listen()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while not data.endswith(b"\n"):
            data += conn.recv(1 << 16)
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            for fd, target in zip(fds, (0, 1, 2), strict=True):
                os.dup2(fd, target)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = ["ser", *request["argv"]]
            try:
                cli.main(request["argv"], prog_name="ser")
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else int(done.code is not None)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        conn.close()


@pytest.fixture
def ser_shim(tmp_path):
    """A `ser` executable served by :func:`serve`, stopped after the test."""
    address = str(tmp_path / "ser.sock")
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import test_docs; test_docs.serve({address!r})"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "ready\n"
        shim = tmp_path / "bin" / "ser"
        shim.parent.mkdir()
        shim.write_text(f"#!{sys.executable} -S\n" + CLIENT.format(address=address))
        shim.chmod(0o755)
        yield shim
    finally:
        server.kill()
        server.wait()


def console_commands(code: str) -> str:
    """The commands of a console block: its lines after a `$ ` prompt."""
    return "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))


def run_shell(code: str, block: Block, work: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"{block.where} failed:\n{code}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


def run_python(code: str, block: Block, work: Path, env: dict[str, str], monkeypatch) -> None:
    with monkeypatch.context() as patch:
        patch.chdir(work)
        for name in ("CORPUS", "MODEL"):
            patch.setenv(name, env[name])
        exec(compile(code, block.where, "exec"), {"__name__": "__main__"})
