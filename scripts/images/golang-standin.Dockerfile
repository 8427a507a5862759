# Stand-in for golang:<minor>-bookworm where no registry answers: Debian 12 plus the Go
# toolchain from the Go module proxy, so it builds the same on any machine, with or without
# a Go of its own. Debian's golang-go (1.19) predates GOTOOLCHAIN, so it fetches the pinned
# toolchain module itself (golang.org/toolchain, the module GOTOOLCHAIN=<version> fetches,
# checked against the checksum database) and is purged again. The download is bounded and
# retried: the go command has no network timeout of its own.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG GO_VERSION
WORKDIR /tmp
# golang-go: only to download the toolchain module. ca-certificates: HTTPS to the module
# proxy, here and in every build that starts from this image.
RUN --mount=type=secret,id=ca,required=false \
    test -n "${GO_VERSION}" \
 && if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
 && apt-get -o Acquire::Retries=5 update \
 && apt-get -o Acquire::Retries=5 install -y --no-install-recommends golang-go ca-certificates \
 && for attempt in 1 2 3 4; do \
      if GOPATH=/tmp/gopath GOFLAGS=-modcacherw timeout 300 go mod download -json "golang.org/toolchain@v0.0.1-${GO_VERSION}.linux-amd64" > /tmp/toolchain.json; then break; fi; \
      echo "toolchain download: attempt $attempt failed or timed out" >&2; \
    done \
 && dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' /tmp/toolchain.json) \
 && test -d "$dir" \
 && cp -a "$dir" /usr/local/go \
 && chmod 0755 /usr/local/go/bin/* /usr/local/go/pkg/tool/linux_amd64/* \
 && apt-get purge -y golang-go && apt-get autoremove -y \
 && rm -rf /tmp/gopath /tmp/toolchain.json /var/lib/apt/lists/* \
 && /usr/local/go/bin/go version > /tmp/go-version.txt \
 && grep -F "${GO_VERSION} " /tmp/go-version.txt \
 && rm /tmp/go-version.txt
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
