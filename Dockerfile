# Two stages: build with the Rust toolchain, run on a slim Debian with only the binary.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin hrwproxy

FROM debian:bookworm-slim
COPY --from=build /src/target/release/hrwproxy /usr/local/bin/hrwproxy
# The config lives in a directory (mount yours over /config, never a single file): saves by
# rename and ConfigMap updates replace the file, which only a directory mount lets us see.
COPY config/docker.yaml /config/hrwproxy.yaml
# glibc otherwise raises its mmap threshold after the first large free and keeps what a shrunk
# membership let go of (benches/large.sh: 42 -> 27 MiB after going from 10,000 nodes to 3).
ENV MALLOC_MMAP_THRESHOLD_=131072
USER 65534:65534
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["hrwproxy", "status", "--admin", "127.0.0.1:9090"]
ENTRYPOINT ["hrwproxy"]
# The demo out of the box (built-in nodes inside the container); `serve` for real nodes.
CMD ["demo", "--config", "/config/hrwproxy.yaml"]
