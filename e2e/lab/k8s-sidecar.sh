#!/usr/bin/env bash
# k8s-sidecar.sh NAME MODULE VERSION: build (once, cached) the kubernetes-csi
# sidecar NAME from MODULE at VERSION, and print the directory that holds it
# (the binary NAME, build-info, ready). For example
#   k8s-sidecar.sh csi-attacher github.com/kubernetes-csi/external-attacher/v4 v4.13.0
#   k8s-sidecar.sh csi-provisioner github.com/kubernetes-csi/external-provisioner/v6 v6.3.0
#   k8s-sidecar.sh csi-resizer github.com/kubernetes-csi/external-resizer/v2 v2.3.0
#
# It comes from the Go module proxy: MODULE@VERSION is downloaded and copied
# out of the module cache into a scratch directory, and its own main module
# (its go.mod, go.sum and replace directives; the module zip has no vendor
# directory) builds ./cmd/NAME with CGO_ENABLED=0 -trimpath and
# -X main.version=VERSION, under `nice -n 19`. Nothing of it enters the
# repository.
#
# The cache, beside the Kubernetes binaries, is keyed on the name, the version
# and the target architecture:
#   ${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}/NAME-VERSION-GOARCH
# A directory is used only when its file `ready` exists (written last); builds
# of one entry are serialized with flock. $GO names the go command (default go).
set -euo pipefail
me=k8s-sidecar.sh
if [ $# -ne 3 ]; then
	echo "usage: $me NAME MODULE VERSION" >&2
	exit 2
fi
name=$1 module=$2 version=$3
cache=${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}
go=${GO:-go}

# Only names that are safe on a command line and in a path.
if ! [[ $name =~ ^csi-[a-z][a-z0-9-]*$ ]]; then
	echo "$me: name $name is not csi-NAME" >&2
	exit 2
fi
if ! [[ $module =~ ^github\.com/kubernetes-csi/[a-z][a-z0-9-]*/v([2-9]|[1-9][0-9]+)$ ]]; then
	echo "$me: module $module is not github.com/kubernetes-csi/REPO/vMAJOR" >&2
	exit 2
fi
major=${module##*/}
if ! [[ $version =~ ^$major\.[0-9]+\.[0-9]+$ ]]; then
	echo "$me: version $version is not $major.MINOR.PATCH (the major version of $module)" >&2
	exit 2
fi
arch=$($go env GOARCH)
dir=$cache/$name-$version-$arch
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.$name-$version-$arch.lock"
flock 9
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi
work=$(mktemp -d "$cache/.tmp.$name.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
echo "$me: building $name $version ($arch) into $dir (minutes)" >&2
start=$(date +%s)

src=$(cd "$work" && GOFLAGS=-mod=mod $go mod download -json "$module@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$src/go.mod" ] || { echo "$me: no source for $module@$version" >&2; exit 1; }
[ -d "$src/cmd/$name" ] || { echo "$me: $module@$version has no ./cmd/$name" >&2; exit 1; }
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$work/out"
(cd "$work/src" && CGO_ENABLED=0 GOOS=linux GOARCH="$arch" GOFLAGS=-mod=mod nice -n 19 \
	$go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/out/$name" "./cmd/$name")
[ -x "$work/out/$name" ] || { echo "$me: $name was not built" >&2; exit 1; }
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
echo "$me: built $name in $(($(date +%s) - start)) s" >&2
echo "$dir"
