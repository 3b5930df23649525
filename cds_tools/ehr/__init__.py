"""An EHR simulator: a CDS Hooks 2.0 *client* for trying any CDS service without an EHR.

It does what an EHR (or the public CDS Hooks Sandbox) does, one step per module, so each step can
be reused by the conformance checker and the tests:

* ``fhir``: put a patient Bundle into a FHIR server (or serve one read-only on loopback);
* ``client``: discovery, hook calls and feedback over HTTP, each signed when a key is given;
* ``prefetch``: resolve a service's prefetch templates against the FHIR server (GET, or POST
  ``_search`` like the Sandbox) and shape the result in every prefetch mode the spec allows;
* ``signing``: the client's ES384/RS384 key, its JWTs and its JWK Set served on loopback;
* ``render``: cards as plain text for a terminal;
* ``conformance`` and ``rules``: the checker that plays this client against a service and reports
  per rule of the CDS Hooks 2.0 checklist;
* ``cli``: the ``cds-fasciculation ehr ...`` and ``cds-fasciculation conformance`` commands.

Nothing here depends on our own service: it talks only HTTP and the CDS Hooks wire format.
"""
