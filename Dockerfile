# Panda chat room: a static binary on a distroless base (CA certificates for
# the WeChat API, no shell, runs as an unprivileged user).
#
#   docker build -t pandachat .
#   docker run -d --name pandachat -p 8765:8765 -v pandachat-data:/data \
#     -e WX_APPID=wx... -e WX_SECRET=... -e PANDA_PUBLIC_URL=https://chat.example.com pandachat

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/pandachat ./cmd/pandachat \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pandachat /pandachat
# The volume starts out owned by the image's user (nonroot, uid 65532).
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV PANDA_ADDR=0.0.0.0:8765 \
    PANDA_DATA=/data \
    PANDA_LOG_FORMAT=json \
    GOMEMLIMIT=512MiB
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/pandachat", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/pandachat"]
CMD ["serve"]
