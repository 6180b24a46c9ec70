# Two stages: build the release binary, then run it on a slim Debian with nothing else.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin stackhound

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data stackhound && mkdir -p /data && chown stackhound /data
COPY --from=build /src/target/release/stackhound /usr/local/bin/stackhound
USER stackhound
WORKDIR /data
ENV STACKHOUND_BIND=0.0.0.0:8000 DATABASE_URL=sqlite:///data/stackhound.db
EXPOSE 8000
VOLUME /data
ENTRYPOINT ["stackhound"]
CMD ["serve"]
