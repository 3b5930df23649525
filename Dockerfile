# Production image of the fasciculation work-up CDS Hooks service.
#
#   docker build -t cds-fasciculation .
#   docker run --read-only --tmpfs /tmp -p 8100:8100 --env-file deploy/compose/cds.env cds-fasciculation
#
# Two stages: "build" makes a virtualenv with the service and its dependencies (pip, compilers'
# leftovers and the source tree stay behind); "runtime" copies only that virtualenv onto the slim
# base and runs it as an unprivileged user. Nothing is written to the image's file system at run
# time, so `--read-only` works; only /tmp must be writable (a tmpfs) for the Prometheus
# multi-worker files. Without a Docker engine, see deploy/container/build-local.sh.

# BASE_IMAGE must provide python3 (with the venv module) on PATH. Here (no registry) the build
# script passes a locally made Debian bookworm image instead of the official one.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# PIP_NO_INDEX / PIP_FIND_LINKS let an offline build install from a mounted wheelhouse;
# on a normal machine they are empty and pip uses the package index.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies first, from pyproject.toml alone, so a change of code rebuilds only the layers below.
RUN python3 -m venv /opt/cds \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > requirements.txt \
    && /opt/cds/bin/pip install --no-cache-dir -r requirements.txt
COPY cds_service ./cds_service
# the fixture loader and EHR simulator: the demo seed and the ehr/conformance commands use them
COPY cds_tools ./cds_tools
RUN /opt/cds/bin/pip install --no-cache-dir --no-deps . \
    && /opt/cds/bin/python -m compileall -q /opt/cds/lib \
    && /opt/cds/bin/pip uninstall --yes pip

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cds-fasciculation" \
      org.opencontainers.image.description="HL7 CDS Hooks 2.0 service for the work-up of muscle fasciculations" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 cds \
    && useradd --uid 10001 --gid cds --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cds
COPY --from=build /opt/cds /opt/cds
# The card catalogue is data that clinicians review and edit (cards/*.yaml), not code; a hospital
# may mount its own reviewed copy over /opt/cds/cards.
COPY cards /opt/cds/cards
# Production defaults: JWT required and CORS closed come with CDS_PROFILE=production; the
# database, Redis, hash key and trust settings come from the environment (see docs/deployment.md).
ENV PATH=/opt/cds/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    CDS_CARDS_DIR=/opt/cds/cards \
    CDS_PROFILE=production \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8100 \
    CDS_WORKERS=2
WORKDIR /tmp
USER 10001:10001
EXPOSE 8100
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["cds-fasciculation", "healthcheck"]
ENTRYPOINT ["cds-fasciculation"]
CMD ["serve"]
