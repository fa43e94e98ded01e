#!/usr/bin/env bash
# k8s-attacher.sh [VERSION]: build (once, cached) csi-attacher, the
# external-attacher sidecar, and print the directory that holds it.
#
# It comes from the Go module proxy: the module
# github.com/kubernetes-csi/external-attacher/v4 at VERSION is downloaded and
# copied out of the module cache into a scratch directory, and its own main
# module (its go.mod, go.sum and replace directives; the module zip has no
# vendor directory) builds ./cmd/csi-attacher with CGO_ENABLED=0 -trimpath,
# under `nice -n 19`. Nothing of it enters the repository.
#
# The cache, beside the Kubernetes binaries, is keyed on the version and the
# target architecture:
#   ${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}/csi-attacher-VERSION-GOARCH
# A directory is used only when its file `ready` exists (written last).
# VERSION defaults to $RDS_CSI_ATTACHER_VERSION or v4.13.0. $GO names the go
# command (default go).
set -euo pipefail
version=${1:-${RDS_CSI_ATTACHER_VERSION:-v4.13.0}}
cache=${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}
go=${GO:-go}
module=github.com/kubernetes-csi/external-attacher/v4

if ! [[ $version =~ ^v4\.[0-9]+\.[0-9]+$ ]]; then
	echo "k8s-attacher.sh: version $version is not v4.MINOR.PATCH" >&2
	exit 2
fi
arch=$($go env GOARCH)
dir=$cache/csi-attacher-$version-$arch
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.csi-attacher-$version-$arch.lock"
flock 9
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi
work=$(mktemp -d "$cache/.tmp.csi-attacher.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
echo "k8s-attacher.sh: building csi-attacher $version ($arch) into $dir (minutes)" >&2
start=$(date +%s)

src=$(cd "$work" && GOFLAGS=-mod=mod $go mod download -json "$module@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$src/go.mod" ] || { echo "k8s-attacher.sh: no source for $module@$version" >&2; exit 1; }
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$work/out"
(cd "$work/src" && CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOFLAGS=-mod=mod nice -n 19 \
	$go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/out/csi-attacher" ./cmd/csi-attacher)
[ -x "$work/out/csi-attacher" ] || { echo "k8s-attacher.sh: csi-attacher was not built" >&2; exit 1; }
{
	echo "module $module"
	echo "version $version"
	echo "arch $arch"
	echo "go $($go env GOVERSION)"
	echo "seconds $(($(date +%s) - start))"
} >"$work/out/build-info"
rm -rf "$dir"
mv "$work/out" "$dir"
touch "$dir/ready"
echo "k8s-attacher.sh: built in $(($(date +%s) - start)) s" >&2
echo "$dir"
