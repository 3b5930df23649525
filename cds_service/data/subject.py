"""Keep another patient's data out of a call: every resource must belong to ``context.patientId``.

The prefetch is sent by the client and the FHIR server answers queries we build, and neither is
beyond mistakes: an EHR that reuses a prefetch cache across patients, a proxy that mixes up two
answers, a query parameter the server ignores. A card computed from another patient's TSH or
medication list is a patient-safety failure, so the gathered data is screened before any rule
runs (issue 16):

* a ``Patient`` resource whose id is not ``context.patientId`` means the whole key is about someone
  else, and so possibly the whole request: the call is refused, naming the key (400 when the client
  prefetched it, 412 when our FHIR fetch returned it) and no card is computed;
* any other resource whose ``subject`` or ``patient`` references a different Patient is dropped,
  and the number dropped goes into the audit record (``foreign_dropped``) and a warning log line
  (counts and key names only, never ids).

A resource with no patient reference, or one that cannot be resolved to a Patient id (a contained
or ``urn:uuid:`` reference, an identifier-only reference), is kept: it claims no other patient.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from cds_service.data.gather import GatheredData, KeyState
from cds_service.protocol.errors import BadRequest, PreconditionFailed

log = logging.getLogger("cds.data")

# ``Patient/{id}`` as the last Patient segment of a relative or absolute reference, before an
# optional ``/_history/{version}``. FHIR ids are [A-Za-z0-9\-.]{1,64}.
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_SUBJECT_FIELDS = ("subject", "patient")


def referenced_patient(resource: dict[str, Any], seen: dict[str, str | None] | None = None) -> str | None:
    """The Patient id this resource's ``subject``/``patient`` points at; None when it names none.
    ``seen`` remembers each reference text's answer for one screen: a chart repeats one
    reference thousands of times, and the pattern search was most of the screen's cost."""
    for name in _SUBJECT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict):
            text = ref.get("reference")
            if not isinstance(text, str):
                continue
            if seen is not None and text in seen:
                found = seen[text]
            else:
                match = _PATIENT_REF.search(text.strip())
                found = match.group(1) if match else None
                if seen is not None:
                    seen[text] = found
            if found is not None:
                return found
    return None


def screen_subject(data: GatheredData, patient_id: str | None) -> int:
    """Refuse a key holding another Patient, drop other patients' resources; returns how many
    resources were dropped. Does nothing for a hook without a patient in context."""
    if not patient_id:
        return 0
    wanted = patient_id.strip().removeprefix("Patient/")
    dropped: dict[str, int] = {}
    seen: dict[str, str | None] = {}
    for key, result in data.keys.items():
        kept = []
        for res in result.resources:
            if res.get("resourceType") == "Patient":
                if res.get("id") != wanted:
                    where = "prefetch" if result.state is KeyState.PREFETCHED else "FHIR data"
                    message = (
                        f"{where} '{key}' holds a Patient other than context.patientId; "
                        "the request was refused and no card was computed"
                    )
                    log.warning(
                        "patient mismatch", extra={"fields": {"key": key, "state": result.state.value}}
                    )
                    if result.state is KeyState.PREFETCHED:
                        raise BadRequest(message)
                    raise PreconditionFailed(message)
                kept.append(res)
                continue
            ref = referenced_patient(res, seen)
            if ref is not None and ref != wanted:
                dropped[key] = dropped.get(key, 0) + 1
                continue
            kept.append(res)
        if len(kept) != len(result.resources):
            result.resources = kept
    total = sum(dropped.values())
    if total:
        log.warning("resources of another patient dropped", extra={"fields": {"dropped": dropped}})
    return total
