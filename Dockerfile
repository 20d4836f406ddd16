# One image for every service; the CLI is the entrypoint (`cpevents registry`, `cpevents gateway`,
# `cpevents worker streams`, `cpevents worker delivery`, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY streams ./streams
COPY delivery ./delivery
COPY cpevents ./cpevents
RUN pip install . && useradd --system --uid 10001 cpevents
USER cpevents

ENTRYPOINT ["cpevents"]
CMD ["--help"]
