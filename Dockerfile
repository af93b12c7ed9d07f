# Two stages: build with the Rust toolchain, run on a slim Debian with only the binary.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin hrwproxy

FROM debian:bookworm-slim
COPY --from=build /src/target/release/hrwproxy /usr/local/bin/hrwproxy
COPY config/docker.yaml /config/hrwproxy.yaml
USER nobody
EXPOSE 8080
ENTRYPOINT ["hrwproxy"]
# The demo out of the box; mount your own /config and run `serve` for real nodes.
CMD ["demo", "--config", "/config/hrwproxy.yaml"]
