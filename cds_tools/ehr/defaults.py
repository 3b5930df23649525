"""Constants shared by the simulator's modules and its argument parser. Kept free of imports so
that building the ``cds-fasciculation`` parser (which every command does, ``healthcheck`` in the
container image included) costs nothing."""

ALGORITHMS = ("ES384", "RS384")
DEFAULT_ISS = "https://ehr-simulator.cds-fasciculation.test"
DEFAULT_USER = "Practitioner/ehr-sim-practitioner"
DEFAULT_JWKS_PORT = 8111
SANDBOX_LIKE_ORIGIN = "http://127.0.0.1:8080"
