"""Lean request decoding: build Python objects only for the resources a topic can read.

A patient-view body is mostly Bundle entries of resources no rule will ever read (vital signs,
unrelated labs); parsing them all into dictionaries and freeing them again was most of the cost
of a call (docs/performance.md). A topic declares, per resource type, a *sieve* (``Sieve``): the
fields that decide whether a resource can matter (``key``), that decision (``keep``), and the
fields every later step still reads of a resource that cannot (``stub``).

The body is decoded with ``msgspec``: one pass splits the request's own fields and the prefetch map
into raw bytes (``_Top``); one typed pass per prefetched Bundle reads the Bundle's elements and
every entry's head (the key fields as raw bytes, unknown fields skipped without building objects);
one ``to_builtins`` call makes the dictionaries; and only when some resources are needed whole, a
second pass finds their bytes for ``orjson``. A resource the topic cannot use is passed on as its
stub: a dictionary with ``resourceType``, ``id`` and the stub fields only.

Exactness: everything else is decoded by ``orjson`` as before, and a body the lean path cannot read
that way (a prefetch that is not an object, an ``entry`` that is not a list of objects with object
resources, invalid JSON or UTF-8, nesting past msgspec's recursion guard) is decoded by
``orjson.loads`` whole, so error answers are unchanged. The equivalence of whole calls between
this decoder and the full parse is tested over the golden fixtures, the order cases, generated
charts and arbitrary bodies (``tests/unit/test_sieve_equivalence.py``).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from cds_service.protocol.models import HookRequest

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
    values, identical decision, so a chart of 2,000 Observations with 46 distinct code texts asks
    the topic 46 times.
    """

    key: Mapping[str, tuple[str, ...]]
    stub: Mapping[str, tuple[str, ...]]
    keep: Callable[[str, dict[str, Any]], bool]
    _bundles: msgspec.json.Decoder[Any] = field(init=False, repr=False)
    _memo: dict[tuple[str, tuple[bytes, ...]], bool] = field(init=False, repr=False)
    _unset: dict[str, tuple[str, ...]] = field(init=False, repr=False)

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
        bundle = msgspec.defstruct(
            "SieveBundle",
            [(n, list[entry] if n == "entry" else Any, msgspec.UNSET) for n in BUNDLE_FIELDS],  # type: ignore[valid-type]
            gc=False,
        )
        object.__setattr__(self, "_bundles", msgspec.json.Decoder(bundle))
        # Per sieved type, the head fields its stub leaves out (its key fields, others' stub fields).
        unset = {
            kind: tuple(n for n, _ in names[2:] if n not in self.stub.get(kind, ())) for kind in self.key
        }
        object.__setattr__(self, "_unset", unset)
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

    def _is_stub(self, head: Any) -> bool:
        """Whether this resource head is of a sieved type the topic cannot use; if so, reduce it
        to its stub in place (every other field unset, so ``to_builtins`` leaves it out)."""
        kind = head.resourceType
        names = self.key.get(kind) if isinstance(kind, str) else None
        if names is None:
            return False
        raws = tuple(b"" if (r := getattr(head, n)) is msgspec.UNSET else bytes(r) for n in names)
        if self.can_matter(kind, raws, names):
            return False
        for name in self._unset[kind]:
            setattr(head, name, msgspec.UNSET)
        return True

    def bundle(self, raw: msgspec.Raw) -> dict[str, Any] | None:
        """A Bundle as ``orjson`` would give it, except that each resource the topic cannot use
        is its stub; None when ``raw`` is not a Bundle with entries (decode it plainly). One C
        pass reads the Bundle's elements and every entry's head, one C call turns them into
        dictionaries, and a second pass, only when some resource is needed whole, finds those
        resources' bytes. Raises ``msgspec.ValidationError`` when ``entry`` is not a list of
        objects whose resources are objects."""
        decoded = self._bundles.decode(raw)
        if decoded.resourceType != "Bundle" or decoded.entry is msgspec.UNSET:
            return None
        whole: list[int] = []
        for i, entry in enumerate(decoded.entry):
            head = entry.resource
            if head is not msgspec.UNSET and not self._is_stub(head):
                whole.append(i)
                entry.resource = msgspec.UNSET  # decoded whole below
        out: dict[str, Any] = msgspec.to_builtins(decoded)
        if whole:
            raws = _RAW_ENTRIES.decode(raw).entry
            entries = out["entry"]
            for i in whole:
                entries[i]["resource"] = orjson.loads(memoryview(raws[i].resource))
        return out


# FHIR R4 Bundle.entry elements, in order.
ENTRY_FIELDS = (
    "id", "extension", "modifierExtension", "link", "fullUrl", "resource", "search", "request", "response",
)


# FHIR R4 Bundle elements.
BUNDLE_FIELDS = (
    "resourceType", "id", "meta", "implicitRules", "language", "identifier", "type", "timestamp", "total", "link",
    "entry", "signature",
)


class _RawEntry(msgspec.Struct, gc=False):
    """A Bundle entry with its resource left as raw bytes (only ``resource`` is read)."""

    resource: msgspec.Raw = msgspec.UNSET  # type: ignore[assignment]


class _RawEntries(msgspec.Struct, gc=False):
    """A Bundle with only its entries' resources, as raw bytes."""

    entry: list[_RawEntry] = []


_RAW_MAP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_ENTRIES = msgspec.json.Decoder(_RawEntries)


class _Shape(Exception):
    """A piece is not shaped as the lean path expects: decode the whole body the plain way."""


def _bundle_or_resource(raw: msgspec.Raw, sieve: Sieve) -> Any:
    if memoryview(raw)[:1].tobytes() != b"{":  # null, a list, a string: whatever it is, as it is
        return orjson.loads(memoryview(raw))
    try:
        out = sieve.bundle(raw)
    except msgspec.ValidationError:
        raise _Shape from None  # an entry that is not an object (or its resource): as orjson gives it
    return orjson.loads(memoryview(raw)) if out is None else out


# The fields of a CDS Hooks request (``HookRequest``'s, so the two cannot drift), each as raw
# bytes and the prefetch map split as well; any other field is a validation error, so that such a
# body takes the plain split (``dict[str, Raw]``) and loses nothing.
_Top = msgspec.defstruct(
    "_Top",
    [
        (name, dict[str, msgspec.Raw] | None if name == "prefetch" else msgspec.Raw, msgspec.UNSET)
        for name in HookRequest.model_fields
    ],
    forbid_unknown_fields=True,
    gc=False,
)
_TOP = msgspec.json.Decoder(_Top)


def _top_fields(top: Any) -> dict[str, Any]:
    return {n: v for n in _Top.__struct_fields__ if (v := getattr(top, n)) is not msgspec.UNSET}


_UTF8 = codecs.getincrementaldecoder("utf-8")
_UTF8_CHUNK = 65_536


def _check_utf8(body: bytes | bytearray) -> None:
    """Raise UnicodeDecodeError unless ``body`` is valid UTF-8. In chunks: decoding a 2 MB body
    at once builds a 2 to 9 MB string in fresh pages (measured 2.1 ms a call in the service, 0.6 ms
    of it decoding); 64 KiB pieces reuse the same heap memory."""
    decoder = _UTF8()
    view = memoryview(body)
    for start in range(0, len(view), _UTF8_CHUNK):
        decoder.decode(view[start : start + _UTF8_CHUNK])
    decoder.decode(b"", final=True)


def lean_bundle(content: bytes, sieve: Sieve) -> Any:
    """``orjson.loads(content)`` of a FHIR server's answer, except that resources the topic cannot
    use are stubs when it is a Bundle; raises ``orjson.JSONDecodeError`` exactly when
    ``orjson.loads`` would."""
    try:
        out = sieve.bundle(content)  # type: ignore[arg-type]  # bytes decode like Raw
        if out is None:
            return orjson.loads(content)
        if not content.isascii():
            _check_utf8(content)
        return out
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return orjson.loads(content)


def lean_loads(body: bytes | bytearray, sieve: Sieve) -> Any:
    """``orjson.loads(body)``, except that sieved resources the topic cannot use are stubs.

    Raises ``orjson.JSONDecodeError`` exactly when ``orjson.loads`` would.
    """
    try:
        try:
            top = _top_fields(_TOP.decode(body))
        except msgspec.ValidationError:  # a field beyond CDS Hooks' own, or prefetch not an object
            top = _RAW_MAP.decode(body)
        out: dict[str, Any] = {}
        for key, value in top.items():
            if key != "prefetch":
                out[key] = orjson.loads(memoryview(value))
                continue
            if value is None or isinstance(value, dict):  # split by _TOP already
                prefetch = value
            else:
                try:
                    prefetch = _RAW_MAP.decode(value)
                except msgspec.ValidationError:
                    out[key] = orjson.loads(memoryview(value))
                    continue
            out[key] = None if prefetch is None else {k: _bundle_or_resource(v, sieve) for k, v in prefetch.items()}
        if not body.isascii():
            _check_utf8(body)  # skipped parts must be valid UTF-8 too, as orjson requires
        return out
    except (msgspec.DecodeError, orjson.JSONDecodeError, UnicodeDecodeError, RecursionError, _Shape):
        return orjson.loads(body)
