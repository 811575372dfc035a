# syntax=docker/dockerfile:1
# lessonbridge: one static binary on distroless. Build with
#   docker build --build-arg VERSION=$(git describe --tags --always) -t lessonbridge .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/lessonbridge ./cmd/lessonbridge

# distroless/static has CA certificates (for JobManager and NATS TLS), tzdata and /etc/passwd, and no
# shell: health checks use the binary itself (`lessonbridge healthcheck`, see docker-compose.yml).
# Inside a container the endpoints must listen on all interfaces to be reachable through EXPOSE, so
# the default command sets --http-addr 0.0.0.0:8081 (the binary's own default is 127.0.0.1:8081).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lessonbridge /lessonbridge
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/lessonbridge"]
CMD ["run", "--http-addr", "0.0.0.0:8081"]
