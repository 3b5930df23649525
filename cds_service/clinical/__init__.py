"""The fasciculation work-up: terminology, patient record, rules, card catalogue and services.

The only clinical package. It plugs into the protocol layer through ``services.register`` and
knows nothing of HTTP.
"""
