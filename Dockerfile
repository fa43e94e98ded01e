# syntax=docker/dockerfile:1
#
# The rds-csi node plugin image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t ghcr.io/srvlab/rds-csi:TAG .
#
# The binary is built exactly as `make image-binary` builds it (same env, same
# flags); deploy/image_test.go fails when the two drift apart, and when the
# runtime stage gains nvme-cli or a package without a reason.

# ---- build: a static binary (CGO_ENABLED=0), cross-compiled on the build
# platform for the target platform.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/rds-csi .

# ---- runtime: Debian with only what k8s.io/mount-utils runs to format, check,
# mount and grow filesystems. No nvme-cli: the daemon writes option strings to
# /dev/nvme-fabrics and disconnects through sysfs itself.
FROM debian:bookworm-slim
ARG VERSION=dev
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	# mount: mount and umount, which mount-utils runs to mount staging and publish paths and to unmount them.
	mount \
	# util-linux: blkid (is the device formatted, and with what), fsck (pre-mount check of ext4) and blockdev (read-only check before a resize).
	util-linux \
	# e2fsprogs: mkfs.ext4 (format a blank volume), e2fsck (behind fsck.ext4) and resize2fs (grow after a volume expansion).
	e2fsprogs \
	# xfsprogs: mkfs.xfs (format), xfs_repair (repair by hand) and xfs_growfs (grow after a volume expansion). Pulls python3 in as a dependency (for xfs_scrub_all), unavoidable with apt.
	xfsprogs \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/rds-csi /usr/local/bin/rds-csi
LABEL org.opencontainers.image.title="rds-csi" \
	org.opencontainers.image.description="CSI node plugin for NVMe/TCP volumes" \
	org.opencontainers.image.source="https://github.com/srvlab/rds-csi" \
	org.opencontainers.image.version="${VERSION}"
# Runs as root: mounting, formatting and /dev/nvme-fabrics (0600 root) need it;
# the DaemonSet runs the container privileged in the host network namespace.
ENTRYPOINT ["/usr/local/bin/rds-csi"]
