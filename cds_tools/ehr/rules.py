"""The rules the conformance checker reports, and its report.

Each rule is one line of ``../shared/spec/cds-hooks-2.0-checklist.md`` that a *client* can observe,
named by its checklist section (``2.2``, ``6.1-summary``, ``cds-resp-6``...). Its level says what a
miss means: ``MUST`` (the spec's MUST/SHALL/REQUIRED) is a failure; ``SHOULD`` (the spec's SHOULD)
and ``REC`` (the checklist's recommendations, best practice and interoperability needs such as
CORS) are warnings, which ``--strict`` turns into failures. ``INTEROP`` marks what the spec allows
but real clients break on (a discovery id shared by several hooks); it fails like a MUST, because
the service is unusable with those clients, and its problem text says why. A rule nothing exercised (no card had
suggestions, no ``--auth-required``...) is reported as skipped with the reason, never as passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["MUST", "SHOULD", "REC", "INTEROP"]
Status = Literal["pass", "fail", "warn", "skip"]


@dataclass(frozen=True)
class Rule:
    id: str
    level: Level
    title: str


RULES: tuple[Rule, ...] = (
    Rule("1.1", "MUST", "Answers are JSON (Content-Type application/json)"),
    Rule("1.2", "MUST", "Served over HTTPS (production)"),
    Rule("1.3/1.4", "MUST", "No null, empty string, empty array or empty object (except cards/services)"),
    Rule("2.1", "MUST", "Discovery answers 200 at {base}/cds-services"),
    Rule("2.2", "MUST", "Discovery: a services array, each entry with hook, description and id"),
    Rule("2.2-title", "REC", "Each discovered service has a title (RECOMMENDED)"),
    Rule("2.5", "MUST", "An id listed for several hooks answers each of them (dispatch on id and hook)"),
    Rule("2.5-ids", "INTEROP", "Each discovery entry has an id of its own (clients key services by id)"),
    Rule("4.1", "MUST", "Prefetch templates are relative reads/searches using only 2.0 tokens"),
    Rule("4.2-null", "SHOULD", "Prefetch keys sent as null (client has no data) are answered 200"),
    Rule("4.3.1", "SHOULD", "Prefetch keys left out are fetched from fhirServer"),
    Rule("4.3.2", "MUST", "412 when required data is unavailable (no prefetch, no fhirServer)"),
    Rule("4.3.6", "SHOULD", "OperationOutcome prefetch values are handled (200 or 412, never 400/5xx)"),
    Rule(
        "5-drafts",
        "REC",
        "Order hooks accept drafts as real clients send them (no Bundle.type, DSTU2, incomplete)",
    ),
    Rule("6", "MUST", "Hook calls are answered 200 with {cards[, systemActions]} and nothing else"),
    Rule("6.1-summary", "MUST", "Card summary present and shorter than 140 characters"),
    Rule("6.1-indicator", "MUST", "Card indicator is info, warning or critical"),
    Rule("6.1-source", "MUST", "Card source has a label; url and icon absolute; topic a Coding"),
    Rule("6.1-card", "MUST", "Card detail is Markdown text; card and suggestion uuids are unique strings"),
    Rule("6.1-uuid", "REC", "Every card and suggestion has a uuid (needed for feedback)"),
    Rule(
        "6.1-suggestions", "MUST", "Suggestions have a label, boolean isRecommended, valid selectionBehavior"
    ),
    Rule("6.1-action", "MUST", "Actions are create|update|delete; create and update carry a whole resource"),
    Rule("6.1-overrideReasons", "MUST", "Override reasons are Codings with system and code"),
    Rule("6.1-links", "MUST", "Links have a label, an absolute url and type absolute|smart"),
    Rule("cds-resp-1", "MUST", "selectionBehavior at-most-one: at most one suggestion isRecommended"),
    Rule("cds-resp-2", "SHOULD", "delete actions carry resourceId and no resource"),
    Rule("cds-resp-3", "MUST", "appContext only on smart links"),
    Rule("cds-resp-4", "MUST", "Every override reason has a display"),
    Rule("cds-resp-5", "MUST", "Every action has a description"),
    Rule("cds-resp-6", "MUST", "Cards with suggestions have selectionBehavior"),
    Rule("7-json", "REC", "Malformed JSON or a non-object body is refused with 4xx"),
    Rule("7-fields", "REC", "A request without hook, hookInstance or context is refused with 4xx"),
    Rule("7-context", "REC", "A context without a REQUIRED field is refused with 4xx"),
    Rule("7-hook", "REC", "A hook the id does not serve is refused with 4xx"),
    Rule("cds-r-1", "REC", "fhirAuthorization without fhirServer is refused with 4xx"),
    Rule("7-404", "REC", "An unknown service id is answered 404"),
    Rule("7-405", "REC", "A wrong method on a service endpoint is answered 405"),
    Rule("7-outcome", "REC", "Error answers carry an OperationOutcome (3.0 ballot, harmless in 2.0)"),
    Rule(
        "8",
        "SHOULD",
        "Feedback endpoint accepts 2.0 feedback (accepted; overridden with/without reason), idempotently",
    ),
    Rule(
        "9.2-required", "SHOULD", "Calls without a JWT are refused with 401 (when the service requires auth)"
    ),
    Rule(
        "9.2-invalid",
        "SHOULD",
        "Invalid JWTs are refused with 401 (alg none, unknown key, wrong aud, expired)",
    ),
    Rule("9.2-replay", "SHOULD", "A JWT whose jti was already used is refused with 401"),
    Rule("9.2-no-detail", "REC", "401 answers do not say why the JWT was refused"),
    Rule("9.3-cors", "REC", "CORS preflights answered without a JWT; CORS headers on answers, errors too"),
    Rule("9.3-redirect", "REC", "No redirect or 404 for a trailing or doubled slash"),
    Rule("10", "SHOULD", "Unknown fields, context fields, prefetch keys and extension are tolerated"),
)
BY_ID = {r.id: r for r in RULES}

_NO_CARDS = "no card came back (give --fhir and --patient for a patient the service has advice for)"
# Why a response rule had nothing to check, when nothing in the answers exercised it.
NOT_EXERCISED = {
    **dict.fromkeys(("6.1-summary", "6.1-indicator", "6.1-source", "6.1-card", "6.1-uuid"), _NO_CARDS),
    **dict.fromkeys(("6.1-suggestions", "cds-resp-6"), "no card with suggestions came back"),
    "cds-resp-1": "no card with selectionBehavior at-most-one and suggestions came back",
    **dict.fromkeys(("6.1-action", "cds-resp-5"), "no action came back"),
    "cds-resp-2": "no delete action came back (--drafts with an order the service would remove exercises it)",
    **dict.fromkeys(("6.1-overrideReasons", "cds-resp-4"), "no card with overrideReasons came back"),
    **dict.fromkeys(("6.1-links", "cds-resp-3"), "no card with links came back"),
}


@dataclass
class Outcome:
    """What was seen for one rule: how often it held, what broke it, or why it was not tried."""

    rule: Rule
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def status(self) -> Status:
        if self.problems:
            return "fail" if self.rule.level in ("MUST", "INTEROP") else "warn"
        if self.checked:
            return "pass"
        return "skip"


class Report:
    """Pass/fail per rule; problems are bounded per rule so a broken service cannot flood it."""

    MAX_PROBLEMS = 12

    def __init__(self, target: str) -> None:
        self.target = target
        self.outcomes = {r.id: Outcome(r) for r in RULES}
        self.notes: list[str] = []

    def ok(self, rule: str, times: int = 1) -> None:
        self.outcomes[rule].checked += times

    def problem(self, rule: str, text: str) -> None:
        out = self.outcomes[rule]
        out.checked += 1
        if len(out.problems) < self.MAX_PROBLEMS and text not in out.problems:
            out.problems.append(text)

    def check(self, rule: str, good: bool, text: str) -> None:
        if good:
            self.ok(rule)
        else:
            self.problem(rule, text)

    def skip(self, rule: str, why: str) -> None:
        if self.outcomes[rule].skipped is None:
            self.outcomes[rule].skipped = why

    @staticmethod
    def skip_reason(o: Outcome) -> str:
        return o.skipped or NOT_EXERCISED.get(o.rule.id, "not exercised")

    def statuses(self) -> dict[str, Status]:
        return {rid: o.status for rid, o in self.outcomes.items()}

    def exit_code(self, strict: bool = False) -> int:
        bad = {"fail", "warn"} if strict else {"fail"}
        return 1 if any(s in bad for s in self.statuses().values()) else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "rules": [
                {
                    "rule": o.rule.id,
                    "level": o.rule.level,
                    "title": o.rule.title,
                    "status": o.status,
                    "checked": o.checked,
                    "problems": o.problems,
                    **({"skipped": self.skip_reason(o)} if o.status == "skip" else {}),
                }
                for o in self.outcomes.values()
            ],
            "notes": self.notes,
        }

    def format_text(self) -> str:
        lines = [f"CDS Hooks 2.0 conformance of {self.target}", ""]
        for o in self.outcomes.values():
            status = o.status.upper()
            lines.append(f"{status:<5} {o.rule.id:<20} {o.rule.level:<7} {o.rule.title}")
            if o.status == "skip":
                lines.append(f"{'':<34}({self.skip_reason(o)})")
            for p in o.problems:
                lines.append(f"{'':<34}- {p}")
        counts = {s: 0 for s in ("pass", "fail", "warn", "skip")}
        for s in self.statuses().values():
            counts[s] += 1
        lines += ["", *self.notes] if self.notes else []
        lines.append(
            f"\n{counts['pass']} passed, {counts['fail']} failed, {counts['warn']} warnings, {counts['skip']} skipped"
        )
        return "\n".join(lines)
