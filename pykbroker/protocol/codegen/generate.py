"""Writes ``pykbroker/protocol/_generated/`` from ``protocol_specs/``, or checks it is current."""

from __future__ import annotations

from pathlib import Path

from pykbroker.protocol.codegen.emit import emit_module
from pykbroker.protocol.codegen.layout import GENERATED_MARKER
from pykbroker.protocol.codegen.schema import Message, load_all, snake

_PACKAGE_DOC = (
    GENERATED_MARKER
    + '\n"""Generated codecs, one module per schema file. Regenerate with ``make gen``."""\n'
)
_INDEX_HEADER = GENERATED_MARKER + "\n# Source: every schema in protocol_specs/\n"


def _module_path(msg: Message) -> str:
    parent = Path(msg.rel).parent
    sub = [snake(p.replace("-", "_")) for p in parent.parts]
    return "/".join([*sub, msg.module + ".py"])


def _api_name(request_name: str) -> str:
    base = request_name.removesuffix("Request")
    return snake(base).upper()


def _emit_index(messages: list[Message]) -> str:
    requests = {m.api_key: m for m in messages if m.type == "request" and m.api_key is not None}
    responses = {
        m.api_key: m for m in messages if m.type == "response" and m.api_key is not None
    }
    if set(requests) != set(responses):
        raise SystemExit("every request schema needs its response schema")
    lines = [
        _INDEX_HEADER.rstrip("\n"),
        '"""Every API key with its schemas\' versions, flexible versions and listeners."""',
        "",
        "from __future__ import annotations",
        "",
        "import enum",
        "from typing import NamedTuple",
        "",
        "",
        "class ApiKey(enum.IntEnum):",
        '    """Kafka\'s API keys, named as in Kafka\'s ApiKeys."""',
        "",
    ]
    for key in sorted(requests):
        lines.append(f"    {_api_name(requests[key].name)} = {key}")
    lines += [
        "",
        "",
        "class ApiSpec(NamedTuple):",
        '    """What the schemas say about one API."""',
        "",
        "    api_key: int",
        "    name: str",
        "    request_module: str",
        "    response_module: str",
        "    min_version: int",
        "    max_version: int",
        "    first_flexible_version: int | None",
        "    listeners: tuple[str, ...]",
        "    latest_version_unstable: bool",
        "",
        "",
        "APIS: dict[int, ApiSpec] = {",
    ]
    for key in sorted(requests):
        req, resp = requests[key], responses[key]
        if (req.valid, req.flexible) != (resp.valid, resp.flexible):
            raise SystemExit(f"{req.name}: request and response versions differ")
        flex = None if req.flexible.empty else req.flexible.lo
        lines.append(
            f"    {key}: ApiSpec({key}, {req.name.removesuffix('Request')!r}, "
            f"{req.module!r}, {resp.module!r}, {req.valid.lo}, {req.valid.hi}, {flex!r}, "
            f"{tuple(req.listeners)!r}, {req.latest_version_unstable!r}),"
        )
    lines.append("}")
    lines += ["", "# Schemas that are not requests or responses: name -> module under _generated."]
    lines.append("DATA_MODULES: dict[str, str] = {")
    for m in messages:
        if m.type in ("data", "header"):
            mod = _module_path(m).removesuffix(".py").replace("/", ".")
            lines.append(f"    {m.name!r}: {mod!r},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(specs: Path) -> dict[str, str]:
    """Relative path -> file text for the whole generated package."""
    messages = load_all(specs)
    files: dict[str, str] = {"__init__.py": _PACKAGE_DOC}
    for msg in messages:
        rel = _module_path(msg)
        if rel in files:
            raise SystemExit(f"two schemas map to {rel}")
        files[rel] = emit_module(msg)
        pkg = Path(rel).parent
        while str(pkg) != ".":
            files.setdefault(f"{pkg.as_posix()}/__init__.py", _PACKAGE_DOC)
            pkg = pkg.parent
    files["api_index.py"] = _emit_index(messages)
    return files


def write(specs: Path, out: Path) -> None:
    files = render(specs)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for path in sorted(out.rglob("*.py")):
        if path.relative_to(out).as_posix() not in files:
            path.unlink()


def check(specs: Path, out: Path) -> list[str]:
    """Differences between what the generator writes and what is committed."""
    files = render(specs)
    problems = []
    for rel, text in files.items():
        path = out / rel
        if not path.exists():
            problems.append(f"missing: {rel}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"differs: {rel}")
    for path in sorted(out.rglob("*.py")):
        if path.relative_to(out).as_posix() not in files:
            problems.append(f"not generated: {path.relative_to(out).as_posix()}")
    return problems
