# tierwise: one Rust binary on Debian slim, run as a non-root user.
#
#   docker build -t tierwise .
#   docker run --rm -p 127.0.0.1:4141:4141 \
#     -v "$PWD/config/tierwise.toml:/etc/tierwise/tierwise.toml:ro" \
#     -e TIERWISE_AUTH__ALLOW_UNAUTHENTICATED_NETWORK=true tierwise
#
# Inside the container tierwise listens on 0.0.0.0:4141. It refuses to start on a
# non-loopback address without client keys unless the config (or that env var) says
# auth.allow_unauthenticated_network = true; the image does not say it for you.
# docker-compose.yml runs the whole stack (deploy/tierwise/tierwise.toml).

# ── Build ──────────────────────────────────────────────────────────────────────
FROM rust:1.95-bookworm AS builder
WORKDIR /build
# The image's binary carries no debug info (function names stay, for backtraces): with
# the release profile's line tables and std's debug info it is 92 MB, without 23 MB.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo

# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit. Dummy targets stand in for src/.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin tierwise \
 && rm -rf src

COPY src ./src
# COPY keeps the files' own mtimes, which can be older than the dummy build above;
# touching the crate roots makes cargo rebuild tierwise itself (not the deps).
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin tierwise \
 && ./target/release/tierwise --version

# ── Run ────────────────────────────────────────────────────────────────────────
FROM debian:bookworm-slim

# ca-certificates: the system roots that rustls-platform-verifier uses for HTTPS
# upstreams (OpenAI...). Nothing else: the health check below needs no curl.
# DL3008 (pin apt versions) is ignored on purpose: Debian replaces a package's version
# on the mirror with each (security) update, so a pin stops installing; the base image
# tag pins the release, and a rebuild should pick up the newest roots.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid, so a mounted volume's ownership is predictable. The
# audit log lives in /var/lib/tierwise (a volume in docker-compose.yml).
RUN groupadd --system --gid 10001 tierwise \
 && useradd --system --uid 10001 --gid tierwise --home-dir /var/lib/tierwise \
      --no-create-home --shell /usr/sbin/nologin tierwise \
 && mkdir -p /etc/tierwise /var/lib/tierwise \
 && chown tierwise:tierwise /var/lib/tierwise

COPY --from=builder /build/target/release/tierwise /usr/local/bin/tierwise
# The fully commented example as the default; mount your own over it.
COPY config/tierwise.toml /etc/tierwise/tierwise.toml

ENV TIERWISE_CONFIG=/etc/tierwise/tierwise.toml \
    TIERWISE_SERVER__LISTEN=0.0.0.0:4141 \
    TIERWISE_LOG=info

WORKDIR /var/lib/tierwise
USER 10001:10001
EXPOSE 4141

# tierwise has no health subcommand and the slim image has no curl or wget; installing
# curl would add libcurl and its TLS stack to the image only for this. bash (essential
# in Debian, so always here) speaks enough HTTP over /dev/tcp: GET /healthz and require
# a 200 status line. The port is TIERWISE_SERVER__LISTEN's (it overrides the config
# file's server.listen), so `-e TIERWISE_SERVER__LISTEN=0.0.0.0:8000` stays healthy.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "port=${TIERWISE_SERVER__LISTEN##*:}; exec 3<>/dev/tcp/127.0.0.1/${port:-4141} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM (docker stop) lets in-flight requests finish for server.shutdown_grace_ms
# (30 s by default; give `docker stop` a longer -t, compose a stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tierwise"]
CMD ["serve"]
