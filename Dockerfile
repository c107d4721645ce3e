# syntax=docker/dockerfile:1
# ferrolb's two images from one Dockerfile: static (musl) binaries on a distroless base that
# holds no shell and no package manager, running as a non-root user (65532).
#
#   docker build --target controller -t ferrolb/controller:0.1.0 .
#   docker build --target speaker    -t ferrolb/speaker:0.1.0 .
#
# The speaker image is non-root too; the chart's DaemonSet runs it as UID 0 with every
# capability dropped except NET_RAW and NET_ADMIN (Kubernetes gives non-root processes no
# ambient capabilities), see deploy/helm/ferrolb/templates/speaker-daemonset.yaml.
# For arm64 build with --build-arg RUST_TARGET=aarch64-unknown-linux-musl on an arm64 builder.

ARG RUST_IMAGE=rust:1.89-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
ARG RUST_TARGET=x86_64-unknown-linux-musl
# musl-gcc for the C parts of dependencies (ring).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${RUST_TARGET}"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${RUST_TARGET}" \
      -p ferrolb-controller --bin ferrolb-controller \
      -p ferrolb-speaker --bin ferrolb-speaker \
 && mkdir -p /out \
 && cp "target/${RUST_TARGET}/release/ferrolb-controller" "target/${RUST_TARGET}/release/ferrolb-speaker" /out/

FROM ${RUNTIME_IMAGE} AS controller
COPY --from=builder /out/ferrolb-controller /usr/local/bin/ferrolb-controller
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 7472/tcp
ENTRYPOINT ["/usr/local/bin/ferrolb-controller"]

FROM ${RUNTIME_IMAGE} AS speaker
COPY --from=builder /out/ferrolb-speaker /usr/local/bin/ferrolb-speaker
USER 65532:65532
# /metrics, /healthz, /readyz; membership
EXPOSE 7473/tcp 7946/udp
ENTRYPOINT ["/usr/local/bin/ferrolb-speaker"]
