"""Stage 6, diversity: a classifier puts each question in one domain of a list (the paper: the top-level
Mathematics Subject Classification, `msc.json`).

Where the engine allows it (llamacpp, hf) the reply is constrained to the list's codes, so it is always
valid; otherwise the code is read from the reply's last line, a reply without a valid code is retried
(hotter, another seed), then the question's domain is "unknown"."""

from __future__ import annotations

import json
import re
from pathlib import Path

from s1.core.errors import UserError
from s1.curate.calls import Ask
from s1.curate.selection import classified

STAGE = "diversity"
UNKNOWN = "unknown"
PROMPT = (
    "Classify the math problem below into one top-level Mathematics Subject Classification (MSC) domain.\n\n"
    "Domains:\n{domains}\n\nProblem:\n{question}\n\n"
    "Think briefly if you need to, then write the two-digit code of the domain alone on the last line."
)


def load_domains(config) -> dict[str, dict]:
    """code -> {title, prompt}: from a list of {code, title, prompt?} (s1's msc.json) or a {code: title} object."""
    if config.domains:
        path = config.path(config.domains)
    else:
        folder = config.path(config.data_dir) if config.data_dir else None
        path = folder / "msc.json" if folder else None
        if path is None or not path.is_file():
            raise UserError(
                "Name the domain list in the config (domains: path/to/msc.json, as s1's data/msc.json), "
                "or put msc.json in data_dir."
            )
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"Cannot read the domain list {path} ({exc.__class__.__name__}); give a JSON file of codes."
        ) from None
    if isinstance(raw, dict):
        raw = [{"code": k, "title": v} for k, v in raw.items()]
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(d, dict) and str(d.get("code", "")).strip() for d in raw)
    ):
        raise UserError(
            f"The domain list {path} must be a JSON list of {{code, title}} objects or a {{code: title}} object."
        )
    domains = {}
    for entry in raw:
        code = str(entry["code"]).strip()
        domains[code] = {"title": str(entry.get("title", "")), "prompt": entry.get("prompt")}
    return domains


def domain_lines(domains: dict[str, dict], details: bool) -> str:
    """The domain list for the prompt: titles one a line, or each domain's rubric (msc.json's `prompt`) separated
    by a blank line, as s1's featurization joined them."""
    if details:
        return "\n\n".join(d["prompt"] or f"{code} {d['title']}" for code, d in domains.items())
    return "\n".join(f"{code} {d['title']}" for code, d in domains.items())


def read_code(text: str | None, codes: set[str]) -> str | None:
    """The last valid code on the reply's last non-empty line."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    found = [c for c in re.findall(r"[0-9A-Za-z]+", lines[-1]) if c in codes]
    return found[-1] if found else None


def run(ctx) -> dict:
    config, store = ctx.config, ctx.store
    domains = load_domains(config)
    codes = set(domains)
    role = config.roles.classifier
    caller = ctx.caller("classifier")
    template = (role.prompt or PROMPT).replace("{domains}", domain_lines(domains, config.domain_details))
    rows = classified(store, config.selection.strategy, "id, question, domain")
    found: dict[str, str] = {}
    pending = list(rows)
    with ctx.progress("diversity", len(rows)) as advance:
        for attempt in range(role.retries + 1):
            if not pending:
                break
            asks = [
                Ask(
                    template.replace("{question}", r["question"]),
                    attempt=attempt,
                    choices=tuple(domains),
                    reply_prefix="Domain:",
                )
                for r in pending
            ]
            replies = caller.ask(asks)
            left = []
            for row, reply in zip(pending, replies):
                code = None
                if reply is not None:
                    code = reply["answer"] if reply.get("constrained") else read_code(reply["answer"], codes)
                if code is None and attempt < role.retries:
                    left.append(row)
                else:
                    found[row["id"]] = code or UNKNOWN
                    advance(1)
            pending = left
    store.update({r["id"]: {"domain": found[r["id"]]} for r in rows if found[r["id"]] != r["domain"]})
    per_domain: dict[str, int] = {}
    for code in found.values():
        per_domain[code] = per_domain.get(code, 0) + 1
    return {
        "classified": len(rows),
        "unknown": per_domain.get(UNKNOWN, 0),
        "domains": len(per_domain),
        "per_domain": dict(sorted(per_domain.items())),
        "calls": {caller.name: caller.tally.as_dict()},
    }
