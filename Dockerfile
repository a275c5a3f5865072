# Keyward in a container: built from source in one stage, run from a slim image as a non-root
# user in the other. `docker build -t keyward .`; `dist/compose.yaml` runs two replicas on
# PostgreSQL.
#
# The master key comes in as a file (a secret mounted at /run/secrets/master_key), never in
# the image or its environment; the data directory is a volume.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p keyward-cli --bin keyward \
    && install -m 0755 target/release/keyward /usr/local/bin/keyward

FROM debian:bookworm-slim
# CA certificates for the providers' and the KMS's TLS; nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/keyward --create-home --shell /usr/sbin/nologin keyward \
    && chmod 0700 /var/lib/keyward
COPY --from=build /usr/local/bin/keyward /usr/local/bin/keyward
USER 10001:10001
ENV KEYWARD_DATA_DIR=/var/lib/keyward \
    KEYWARD_LISTEN=0.0.0.0:8080 \
    KEYWARD_LOG_FORMAT=json \
    KEYWARD_PRODUCTION=true \
    KEYWARD_MASTER_KEY_FILE=/run/secrets/master_key
VOLUME ["/var/lib/keyward"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 CMD ["keyward", "healthcheck"]
ENTRYPOINT ["keyward"]
CMD ["serve"]
