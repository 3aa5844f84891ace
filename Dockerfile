# ReleaseBot: `releasebot serve` in a slim image, as a non-root user.
#   docker build -t releasebot .
#   docker run --env-file .env -v "$PWD/releasebot.yml:/config/releasebot.yml:ro" -p 3000:3000 releasebot
# compose.yaml runs it with PostgreSQL; docs/operations.md explains every setting.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs: the metadata, then the four packages it ships.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
COPY emulators ./emulators
RUN pip install . \
    && useradd --system --create-home --uid 10001 --home-dir /home/releasebot releasebot \
    && mkdir /data /config \
    && chown releasebot:releasebot /data

# /data is the working directory, so the default SQLite file (releasebot.db) lands on a volume
# you mount there; with PostgreSQL (DATABASE_URL) nothing is written to the container.
WORKDIR /data
USER releasebot
ENV HOST=0.0.0.0 \
    PORT=3000 \
    RELEASEBOT_CONFIG=/config/releasebot.yml
EXPOSE 3000

# 200 only when the database answers; the slim image has no curl, Python is enough.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)" || exit 1

CMD ["releasebot", "serve"]
