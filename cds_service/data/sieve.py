"""Lean request decoding: build Python objects only for the resources a topic can read.

A patient-view body is mostly Bundle entries of resources no rule will ever read (vital signs,
unrelated labs); parsing them all into dictionaries and freeing them again was most of the cost
of a call (docs/performance.md). A topic declares, per resource type, a *sieve*: the few fields
that decide whether a resource can matter (``head``), and a predicate on those fields (``keep``).
The body is then decoded in three C passes (``msgspec``): the top level and the prefetch map into
raw byte slices, each Bundle's entries into raw resources, and each resource of a sieved type into
its head fields only (unknown fields are skipped without building objects). A resource the
predicate keeps is decoded in full; one it does not is passed on as its head: a dictionary with
only the head fields, which is all any later step reads of a resource that matches nothing.

Exactness: everything that is not a Bundle entry of a sieved type is decoded by ``orjson`` exactly
as before, and any piece that does not have the expected shape (a prefetch that is not an object,
``entry`` that is not a list of objects, a body that is not valid JSON) makes the whole body fall
back to ``orjson.loads``, so error answers are unchanged. The equivalence of cards between this
decoder and the full parse is a property test over the golden fixtures and generated resources
(``tests/unit/test_sieve_equivalence.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

Stub = dict[str, Any]
MEMO_SIZE = 4096  # distinct (code, value) texts remembered per sieve; cleared when full


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per topic
class Sieve:
    """What a topic reads of the resources it does not use, per resource type.

    ``key``: the fields that decide whether a resource of that type can matter (e.g. ``code``);
    ``keep(resource_type, fields)`` decides it from those fields alone (a missing field is absent
    from ``fields``). ``stub``: the fields every later step still reads of a resource that cannot
    matter (e.g. its status and subject); ``resourceType`` and ``id`` are always kept.

    The topic guarantees that a resource it would not keep, reduced to its stub (key fields
    removed), gives the same answer as the whole resource; the equivalence tests hold it to that.
    The decision is remembered by the raw bytes of the key fields: identical text, identical
    values, identical decision, so a chart of 2,000 vital signs with twenty distinct codes asks
    the topic twenty times.
    """

    key: Mapping[str, tuple[str, ...]]
    stub: Mapping[str, tuple[str, ...]]
    keep: Callable[[str, dict[str, Any]], bool]
    _heads: msgspec.json.Decoder[Any] = field(init=False, repr=False)
    _memo: dict[tuple[str, tuple[bytes, ...]], bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names: list[tuple[str, Any]] = [("resourceType", Any), ("id", Any)]
        seen = {"resourceType", "id"}
        for kind in self.key.keys() | self.stub.keys():
            for name in self.key.get(kind, ()):
                if name in seen:
                    raise ValueError(f"sieve field {name!r} named twice")
                names.append((name, msgspec.Raw))
                seen.add(name)
            for name in self.stub.get(kind, ()):
                if name not in seen:
                    names.append((name, Any))
                    seen.add(name)
        head = msgspec.defstruct("SieveHead", [(n, t, msgspec.UNSET) for n, t in names], gc=False)
        entry = msgspec.defstruct(
            "SieveEntry", [(n, head if n == "resource" else Any, msgspec.UNSET) for n in ENTRY_FIELDS], gc=False
        )
        object.__setattr__(self, "_heads", msgspec.json.Decoder(list[entry]))  # type: ignore[valid-type]
        object.__setattr__(self, "_memo", {})

    def can_matter(self, kind: str, raws: tuple[bytes, ...], names: tuple[str, ...]) -> bool:
        """``keep`` for these raw key fields, remembered."""
        memo_key = (kind, raws)
        found = self._memo.get(memo_key)
        if found is None:
            fields = {n: orjson.loads(r) for n, r in zip(names, raws, strict=True) if r}
            found = bool(self.keep(kind, fields))
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()  # bounded memory; refilling costs what not remembering would
            self._memo[memo_key] = found
        return found

    def _stub(self, head: Any) -> dict[str, Any] | None:
        """The stub of a resource the topic cannot use; None when it must be decoded whole."""
        kind = head.resourceType
        names = self.key.get(kind) if isinstance(kind, str) else None
        if names is None:
            return None
        raws = tuple(b"" if (r := getattr(head, n)) is msgspec.UNSET else bytes(r) for n in names)
        if self.can_matter(kind, raws, names):
            return None
        stub = {"resourceType": kind}
        if head.id is not msgspec.UNSET:
            stub["id"] = head.id
        for name in self.stub.get(kind, ()):
            value = getattr(head, name)
            if value is not msgspec.UNSET:
                stub[name] = value
        return stub

    def entries(self, raw: msgspec.Raw) -> list[dict[str, Any]]:
        """A Bundle's ``entry`` array: every entry as ``orjson`` would give it, except that each
        resource the topic cannot use is its stub. One C pass reads every entry's head; a
        second one, only when some resource is needed whole, finds those resources' bytes."""
        heads = self._heads.decode(raw)
        out: list[dict[str, Any]] = []
        whole: list[int] = []
        for i, entry in enumerate(heads):
            item = {n: v for n in ENTRY_FIELDS if (v := getattr(entry, n)) is not msgspec.UNSET}
            if "resource" in item:
                stub = self._stub(item["resource"])
                if stub is None:
                    whole.append(i)
                else:
                    item["resource"] = stub
            out.append(item)
        if whole:
            raws = _RAW_ENTRIES.decode(raw)
            for i in whole:
                out[i]["resource"] = orjson.loads(memoryview(raws[i].resource))
        return out


# FHIR R4 Bundle.entry elements, in order.
ENTRY_FIELDS = (
    "id", "extension", "modifierExtension", "link", "fullUrl", "resource", "search", "request", "response",
)


class _RawEntry(msgspec.Struct, gc=False):
    """A Bundle entry with its resource left as raw bytes (only ``resource`` is read)."""

    resource: msgspec.Raw = msgspec.UNSET  # type: ignore[assignment]


_RAW_MAP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_ENTRIES = msgspec.json.Decoder(list[_RawEntry])


class _Shape(Exception):
    """A piece is not shaped as the lean path expects: decode the whole body the plain way."""


def _bundle_or_resource(raw: msgspec.Raw, sieve: Sieve) -> Any:
    try:
        parts = _RAW_MAP.decode(raw)
    except msgspec.ValidationError:  # not an object (null, a list): whatever it is, as it is
        return orjson.loads(memoryview(raw))
    if "entry" not in parts or bytes(parts.get("resourceType", b"")) != b'"Bundle"':
        return orjson.loads(memoryview(raw))
    out: dict[str, Any] = {}
    for key, value in parts.items():
        if key != "entry":
            out[key] = orjson.loads(memoryview(value))
            continue
        try:
            out[key] = sieve.entries(value)
        except msgspec.ValidationError:
            raise _Shape from None  # entry is not a list of objects: as orjson gives it
    return out


def lean_loads(body: bytes | bytearray, sieve: Sieve) -> Any:
    """``orjson.loads(body)``, except that sieved resources the topic cannot use are heads only.

    Raises ``orjson.JSONDecodeError`` exactly when ``orjson.loads`` would.
    """
    try:
        top = _RAW_MAP.decode(body)
        out: dict[str, Any] = {}
        for key, value in top.items():
            if key != "prefetch":
                out[key] = orjson.loads(memoryview(value))
                continue
            try:
                prefetch = _RAW_MAP.decode(value)
            except msgspec.ValidationError:
                out[key] = orjson.loads(memoryview(value))
                continue
            out[key] = {k: _bundle_or_resource(v, sieve) for k, v in prefetch.items()}
        if not body.isascii():
            bytes(body).decode("utf-8")  # skipped parts must be valid UTF-8 too, as orjson requires
        return out
    except (msgspec.DecodeError, orjson.JSONDecodeError, UnicodeDecodeError, RecursionError, _Shape):
        return orjson.loads(body)
