# One image for every service; the CLI is the entrypoint (`cpevents registry`, `cpevents gateway`,
# `cpevents worker streams`, `cpevents worker delivery`, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY plumbing ./plumbing
COPY registry ./registry
COPY producers ./producers
COPY streams ./streams
COPY delivery ./delivery
COPY cpevents ./cpevents
COPY setup.py ./
# A C compiler only while installing: mypyc compiles the per-record hot paths (setup.py).
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
    && pip install . \
    && apt-get purge -y -qq gcc libc6-dev && apt-get autoremove -y -qq \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 cpevents
USER cpevents

ENTRYPOINT ["cpevents"]
CMD ["--help"]
