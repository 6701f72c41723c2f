# The HiveMind worker image: the standalone executable (dist-exe/hivemind-linux-x64, built by
# `npm run build:exe`) on a minimal Debian with the WireGuard tools, iproute2, CA certificates,
# busybox, tini, e2fsprogs and losetup (a task's bounded /output). It builds offline: `bash scripts/worker-image.sh` makes the base image locally
# from Debian packages (no registry) and runs `docker build --network none`. docs/docker-image.md.
ARG BASE=hivemind/worker-base:12

# Stage 1: lay out the runtime files and check that the executable starts on this base.
FROM ${BASE} AS files
COPY dist-exe/hivemind-linux-x64 /files/usr/local/bin/hivemind
COPY docker/healthcheck.sh /files/usr/local/bin/hivemind-healthcheck
RUN chmod 0755 /files/usr/local/bin/hivemind /files/usr/local/bin/hivemind-healthcheck \
 && HOME=/tmp /files/usr/local/bin/hivemind --version

# Stage 2: the image, with only those two files added to the base.
FROM ${BASE}
ARG HIVEMIND_VERSION=unknown
ARG HIVEMIND_COMMIT=unknown
ARG HIVEMIND_BUILD_HASH=
LABEL org.opencontainers.image.title="hivemind-worker" \
      org.opencontainers.image.description="HiveMind worker: the node agent of the HiveMind compute network" \
      org.opencontainers.image.version="${HIVEMIND_VERSION}" \
      org.opencontainers.image.revision="${HIVEMIND_COMMIT}" \
      org.opencontainers.image.licenses="MIT" \
      io.hivemind.build-hash="${HIVEMIND_BUILD_HASH}"
# A non-root user for the one mode that can do without root: a worker of a development master
# (`--user hivemind --group-add <gid of docker.sock>`). Tunnel mode needs root (see the doc).
# The data dir is owned by it, so a new named volume mounted there is too; root can use it as well.
RUN useradd --system --uid 10001 --user-group --home-dir /home/hivemind --create-home --shell /usr/sbin/nologin hivemind \
 && install -d -o hivemind -g hivemind -m 0700 /var/lib/hivemind
COPY --from=files /files/ /
# Identity, WireGuard key, SQLite history and result spool: keep it on a named volume.
ENV HIVEMIND_HOME=/var/lib/hivemind
WORKDIR /var/lib/hivemind
# The monitor (web page, /healthz); on 127.0.0.1 unless HIVEMIND_MONITOR_LISTEN says otherwise.
EXPOSE 5001
# tini is PID 1: it passes SIGTERM to the worker (which drains, then exits 0) and reaps the
# processes the worker's children leave behind (wireguard-go daemonizes).
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/hivemind"]
CMD ["worker", "start"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/hivemind-healthcheck"]
