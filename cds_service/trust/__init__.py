"""Trust and security: client JWT verification, JWK Set cache, ``jti`` replay cache, fhirServer
guard, JSON shape limits and the audit trail. See docs/security.md.

Deliberately empty of imports: ``cds_service.settings`` imports ``trust.algorithms``, so this
package must not pull in modules that import the settings back.
"""
