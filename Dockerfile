# syntax=docker/dockerfile:1
# One image for every stagedoor component:
#   docker run IMAGE serve waitingroom|ticketing|admission|worker
#   docker run IMAGE migrate
# Multi-stage: the build stage makes a virtualenv; the runtime stage copies it and the
# source (lua/ and templates/ are read from the source tree), runs as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first (their own layer: rebuilt only when pyproject.toml or the pins change),
# pinned by constraints.txt (`make lock`).
COPY pyproject.toml README.md LICENSE constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt
# Then the code. Editable, so the package finds lua/ and templates/ beside it in /app.
COPY stagedoor ./stagedoor
COPY rooms ./rooms
COPY waitingroom ./waitingroom
COPY ticketing ./ticketing
COPY admission ./admission
COPY lua ./lua
COPY templates ./templates
COPY ops/docker ./ops/docker
RUN pip install --no-deps -c constraints.txt -e . && python -m compileall -q stagedoor waitingroom ticketing admission

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="stagedoor" \
      org.opencontainers.image.description="Virtual waiting room and ticketing (all components)"
RUN groupadd --system --gid 10001 stagedoor \
    && useradd --system --uid 10001 --gid stagedoor --home-dir /app --shell /usr/sbin/nologin stagedoor \
    && mkdir -p /keys /data \
    && chown stagedoor:stagedoor /keys /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STAGEDOOR_HOST=0.0.0.0 \
    STAGEDOOR_DATA_DIR=/data \
    STAGEDOOR_SIGNING_KEYS_DIR=/keys \
    STAGEDOOR_LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
EXPOSE 8080 8081 8082 8083
ENTRYPOINT ["stagedoor"]
CMD ["serve", "waitingroom"]
