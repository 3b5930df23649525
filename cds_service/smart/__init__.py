"""SMART on FHIR companion app: the whole fasciculation work-up of one patient on one page.

A card's ``smart`` link opens it from the EHR (EHR launch), or a clinician starts it from
``/smart/`` (standalone launch). It authorises with SMART App Launch 2.0 (PKCE S256, ``state``,
``aud``), reads the patient's data with the access token, and renders the page on the server: no
script, no third-party resource, a strict Content-Security-Policy. It never writes to the EHR.

Registration lives outside the package (``cds_service/smart_settings.py``: the clinical topic reads
it to decide a card's smart link without importing this package). Modules: ``plugin`` (mounts the router through the registry), ``auth`` (discovery, PKCE, token exchange,
``private_key_jwt``), ``session`` (server-side, short-lived), ``fhir`` (parallel, percent-encoded
reads), ``pipeline`` (the one adapter to the service's card pipeline), ``view`` (view model),
``render`` (HTML and SVG), ``router`` (the HTTP endpoints) and ``offline`` (``evaluate --html``).
"""
