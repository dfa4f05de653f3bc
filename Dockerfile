# syntax=docker/dockerfile:1
# rtprobe container image: a release build on the Rust image, copied into distroless cc
# (glibc, CA certificates, no shell) running as the nonroot user (65532). No HEALTHCHECK:
# Kubernetes probes /healthz and /readyz. Nothing is written at run time, so the image works
# with a read-only root filesystem.
#
#   docker build -t rtprobe:0.1.0 .
#   docker run --rm -p 9464:9464 -v "$PWD/rtprobe.yaml:/etc/rtprobe/rtprobe.yaml:ro" rtprobe:0.1.0

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds, so a source edit
# does not rebuild every dependency; the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rtprobe \
 && install -D -m 0755 target/release/rtprobe /out/rtprobe

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="rtprobe" \
      org.opencontainers.image.description="Synthetic realtime speech-to-text probes for vLLM, exported as OpenTelemetry histograms" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/rtprobe /usr/local/bin/rtprobe
# Example clips and their reference transcripts, used by the shipped configs.
COPY examples/audio/ /usr/share/rtprobe/audio/
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["rtprobe"]
CMD ["serve", "--config", "/etc/rtprobe/rtprobe.yaml"]
