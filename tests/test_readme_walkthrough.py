"""The README's commands, read from README.md itself, run in order on a fresh directory.

Every ```bash block of the README is walked top to bottom, as a reader would type it: the
first command's `abtest demo` (its output compared with the README's printed block), then
`abtest serve` (in the background, on a free port instead of 8000), the keys, the curl
calls (made over real HTTP by the test, with the arguments bash expands), the local QA
commands, planning, `abtest analyze` on the demo's own export, push/stop/start/ship and
the export.  Installs, the test command and the benchmarks are not run.

What a block says a command prints is checked: a comment line right after a command that
holds JSON (``# {...}``, ``# 202 {...}``; ``, ...`` stands for more fields) must match the
answer (every field shown, lists element by element); after `abtest serve`, `assign`,
`push`, `start`, `stop`, `ship`, `analyze` and `rollout`, each such comment line (up to
``<-``; ``...`` matches anything) must be a line of the output.  Every command must exit 0
and no answer may be a 5xx.  Two placeholders are filled in: ``abt_...`` (the admin key
serve printed) and ``k1a2b3c4d5e6`` (the id `abtest keys list` showed for ``old-app``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from abtest.embedded import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent  # where the console script `abtest` is installed
NOT_RUN = ("python3 -m venv", ". .venv", "pip ", "pytest", "python benchmarks/")
TEXT_CHECKED = ("serve", "assign", "push", "start", "stop", "ship", "analyze", "rollout")


@dataclass
class Command:
    """One command of a README block and the comment lines right after it."""

    text: str
    expected: list[str] = field(default_factory=list)


def readme_commands(markdown: str) -> list[Command]:
    """The commands of every ```bash block, in order, with their expectation comments."""
    commands: list[Command] = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.DOTALL):
        pending = ""
        last: Command | None = None
        for line in block.splitlines():
            if not pending and not line.strip():
                continue
            if not pending and line.startswith("#"):
                if last is not None:
                    last.expected.append(line[1:].strip())
                continue
            # A trailing backslash joins lines; a newline inside quotes stays in the argument.
            pending += line[:-1] + " " if line.endswith("\\") else line + "\n"
            if line.endswith("\\") or not _complete(pending):
                continue
            for part in pending.strip().split(" && "):
                if not part.startswith(NOT_RUN):
                    last = Command(part.strip())
                    commands.append(last)
                else:
                    last = None
            pending = ""
        assert not pending, f"unfinished command in a README block: {pending!r}"
    return commands


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def _subset(expected: Any, actual: Any) -> bool:
    """Every field shown in ``expected`` has that value in ``actual``."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(_subset(e, a) for e, a in zip(expected, actual, strict=True)))  # fmt: skip
    return bool(expected == actual)


def _expected_json(lines: list[str]) -> tuple[int | None, Any] | None:
    text = " ".join(lines)
    status = None
    if re.match(r"\d{3} [{\[]", text):
        status, text = int(text[:3]), text[4:]
    if not text.startswith(("{", "[")):
        return None
    value, _ = json.JSONDecoder().raw_decode(text.replace(", ...", ""))
    return status, value


def _line_pattern(expected: str) -> re.Pattern[str]:
    shown = expected.split("<-", maxsplit=1)[0].strip()
    parts = [r"\s+".join(map(re.escape, piece.split())) for piece in shown.split("...")]
    return re.compile(".*".join(parts))


class Walk:
    """The state of a reader's terminal: directory, variables, the running service."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.port = free_port()
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ABTEST_")}
        self.env["PATH"] = path
        self.server: subprocess.Popen[str] | None = None
        self.admin_key = ""
        self.last_output = ""

    def localize(self, text: str) -> str:
        """The README's port 8000 becomes this walk's free port; placeholders are filled."""
        text = re.sub(r"\b8000\b", str(self.port), text)
        text = text.replace("abt_...", self.admin_key)
        if "k1a2b3c4d5e6" in text:
            line = next(x for x in self.last_output.splitlines() if x.rstrip().endswith("old-app"))
            text = text.replace("k1a2b3c4d5e6", line.split()[0])
        return text

    def run(self, command: Command) -> None:
        """Run one command as bash would and check what the README says it prints."""
        text = self.localize(command.text)
        argv = shlex.split(text, comments=True)
        if argv[:2] == ["abtest", "serve"]:
            output = self.start_server(argv)
        elif re.match(r"(export )?[A-Z_]+=", text):
            self.assign_variables(text)
            return
        elif argv[0] == "curl":
            self.curl(text, command.expected)
            return
        else:
            done = subprocess.run(
                ["bash", "-c", text], cwd=self.cwd, env=self.env,
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"{text}\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr, done.stderr
            output = done.stdout
            if "--json" in argv:
                json.loads(output)
        self.last_output = output
        if argv[0] == "abtest" and argv[1] in TEXT_CHECKED:
            lines = [line.strip() for line in output.splitlines()]
            for expected in command.expected:
                pattern = _line_pattern(expected)
                assert any(pattern.fullmatch(line) for line in lines), (expected, output)

    def start_server(self, argv: list[str]) -> str:
        self.server = subprocess.Popen(
            argv, cwd=self.cwd, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert self.server.stdout is not None
        output = ""
        for line in self.server.stdout:
            output += line
            if line.startswith("admin key: "):
                self.admin_key = line.split(": ", 1)[1].strip()
            if line.startswith("abtest: serving on"):
                break
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http("GET", "/healthz", {}, None)[0] == 200:
                    return output
            except OSError:
                assert time.monotonic() < deadline and self.server.poll() is None, output
                time.sleep(0.1)

    def assign_variables(self, text: str) -> None:
        names = re.findall(r"\b([A-Z_]+)=", text)
        script = text + "\n" + "".join(f'printf "%s\\0" "${name}"\n' for name in names)
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        values = done.stdout.split("\0")[: len(names)]
        for name, value in zip(names, values, strict=True):
            assert value, f"{name} is empty after: {text}\n{done.stderr}"
            self.env[name] = value

    def curl(self, text: str, expected: list[str]) -> None:
        """curl's arguments as bash expands them, sent with urllib over real HTTP."""
        expanded = subprocess.run(["bash", "-c", f'printf "%s\\0" {text.removeprefix("curl")}'],
                                  cwd=self.cwd, env=self.env, capture_output=True,
                                  text=True, timeout=60, check=True).stdout  # fmt: skip
        args = expanded.split("\0")[:-1]
        method, headers, body, url = "GET", {}, None, ""
        while args:
            arg = args.pop(0)
            if arg.startswith("-X"):
                method = arg[2:] or args.pop(0)
            elif arg == "-H":
                name, _, value = args.pop(0).partition(": ")
                headers[name] = value
            elif arg == "-d":
                data = args.pop(0)
                body = (self.cwd / data[1:]).read_bytes() if data.startswith("@") else data.encode()
                method = "POST" if method == "GET" else method
            elif not arg.startswith("-"):
                url = arg
        path = re.sub(r"^(http://)?(localhost|127\.0\.0\.1):\d+", "", url)
        status, answer = self.http(method, path, headers, body)
        assert status < 500, (text, status, answer)
        wanted = _expected_json(expected)
        if wanted is not None:
            wanted_status, value = wanted
            assert wanted_status is None or wanted_status == status, (text, status)
            assert _subset(value, answer), (text, value, answer)

    def http(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body,
                                         method=method, headers=headers)  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()

    def stop(self) -> int | None:
        if self.server is None or self.server.poll() is not None:
            return None if self.server is None else self.server.returncode
        self.server.send_signal(signal.SIGTERM)
        code = self.server.wait(30)
        assert self.server.stdout is not None
        self.server.stdout.close()
        return code


def test_the_readme_is_parsed_into_the_walkthrough():
    """The parser finds the walkthrough's commands and their expectations (so the slow
    test below cannot pass by walking nothing)."""
    commands = readme_commands(README)
    texts = [c.text for c in commands]
    assert texts[0] == "abtest demo"
    assert all(texts) and not any(t.startswith(NOT_RUN) for t in texts)
    needed_commands = (
        "abtest serve", "abtest keys revoke", "abtest push", "abtest ship", "abtest export",
        "abtest analyze", "curl -s -XPOST localhost:8000/v1/assign",
    )  # fmt: skip
    for needed in needed_commands:
        assert any(t.startswith(needed) for t in texts), needed
    assign = next(c for c in commands if '"unit_id": "user-40"' in c.text)
    assert _expected_json(assign.expected) == (None, {
        "experiment": "ranker-v2", "unit_id": "user-40", "variant": "v2",
        "payload": {"model": "ranker", "version": "2.0.0",
                    "endpoint": "http://ranker-v2.internal/predict"},
        "in_experiment": True, "reason": "assigned", "config_version": 2,
    })  # fmt: skip
    assert _line_pattern("admin key: abt_...  <- kept").fullmatch("admin key: abt_x-y")


def _demo_block() -> list[str]:
    block = re.search(r"```text\n(1\. plan.*?)```", README, flags=re.DOTALL)
    assert block is not None
    return block.group(1).splitlines()


def _same_as_readme(printed: list[str], shown: list[str]) -> None:
    """Line by line; the port may differ; a README line ending in '...' is a prefix."""
    assert len(printed) == len(shown), "\n".join(printed)

    def anyport(line: str) -> str:
        return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)

    for got, want in zip(map(anyport, printed), map(anyport, shown), strict=True):
        if want.endswith("..."):
            assert got.startswith(want[:-3]), (got, want)
        else:
            assert got == want


def test_every_readme_command_works_in_order(tmp_path):
    """The README's walkthrough on a fresh directory: each command works and shows what
    the README says; the demo prints the README's block and keeps every path it prints."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    walk = Walk(tmp_path)
    commands = readme_commands(README)
    try:
        demo, *rest = commands
        assert demo.text == "abtest demo"
        walk.run(demo)
        _same_as_readme(walk.last_output.splitlines(), _demo_block())
        for path in re.findall(r"(abtest-demo/[\w./-]*)", walk.last_output):
            assert (tmp_path / path).exists(), path
        for command in rest:
            walk.run(command)
    finally:
        code = walk.stop()
    assert code == 0
    assert json.loads((tmp_path / "decision.json").read_text())["verdict"] == "ship"
    assert (tmp_path / "report.html").is_file()
