# The node's image: Python 3.11 (pyproject's requires-python) on Debian 12, with Debian's ffmpeg
# for the video and audio steps. Redis and IPFS are not in it: give the node ARTDAG_REDIS_URL and
# ARTDAG_IPFS_API (docker-compose.yml runs Redis and Kubo beside three nodes).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1 reaps the orphans of killed step workers and passes SIGTERM to the node.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, in their own layer, so editing node/ does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY node/ node/
RUN pip install --no-cache-dir --no-deps -c constraints.txt . \
    && rm -rf build node.egg-info artdag_node.egg-info

# The node key, admin token and local cache live in /data; a fixed uid keeps volumes portable.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin artdag \
    && install -d -o artdag -g artdag -m 0700 /data
USER artdag
VOLUME /data

ENV ARTDAG_HOST=0.0.0.0 \
    ARTDAG_DATA_DIR=/data
EXPOSE 8100

# No curl in slim images; urllib raises on any status but 2xx (503: a daemon is down).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.build_opener(urllib.request.ProxyHandler({})).open('http://127.0.0.1:8100/health', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["artdag-node"]
