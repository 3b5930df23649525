"""The HTTP layer: app factory (``app.py``), routers (``routes/``), request dependencies
(``deps.py``), body reading (``body.py``), responses and the service's own middlewares. The CDS
call itself is ``cds_service/call.py``, which knows nothing of HTTP."""
