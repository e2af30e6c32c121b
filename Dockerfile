# mailplan in a small image: built from this repository in a Rust stage, run as a non-root user
# from a slim Debian with the CA certificates (TLS is verified against the system's roots).
#
#   docker build -t mailplan .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" -e ALICE_OLD -e ALICE_NEW \
#     mailplan apply plans/imap-to-imap.yaml
#
# The plan, its imports and its state store (.mailplan/ beside the plan) live in the mounted
# /work; secrets come from the environment (-e NAME) or mounted files, never from the image.

# --- build: the release profile (stripped, thin LTO); rust-version in Cargo.toml is 1.89
FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package mailplan --bin mailplan \
 && install -m 0755 target/release/mailplan /usr/local/bin/mailplan

# --- runtime: the binary, the CA certificates, a user without privileges
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --user-group mailplan \
 && mkdir /work && chown mailplan:mailplan /work
COPY --from=build /usr/local/bin/mailplan /usr/local/bin/mailplan
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/mailplan/
USER mailplan
WORKDIR /work
ENTRYPOINT ["mailplan"]
CMD ["--help"]
