#!/usr/bin/env bash
# k8s-bins.sh [VERSION]: build (once, cached) the Kubernetes binaries the lab's
# node runs (kubelet, kube-apiserver, kube-controller-manager, kube-scheduler)
# and print the directory that holds them.
#
# They come from the Go module proxy: a scratch module requires
# k8s.io/kubernetes VERSION and replaces each k8s.io staging module (those that
# k8s.io/kubernetes's own go.mod maps to ./staging) with its published
# v0.MINOR.PATCH; one `CGO_ENABLED=0 go build -trimpath` builds the four.
# The build runs under `nice -n 19` (it takes many minutes of both cores, and
# the machine is shared with timing-sensitive lab boots).
#
# The cache, outside the repository, beside the lab's kernels, is keyed on the
# version and the target architecture:
#   ${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}/kubernetes-VERSION-GOARCH
# A directory is used only when its file `ready` exists (written last); a
# half-built one is built again. VERSION defaults to $RDS_CSI_K8S_VERSION or
# v1.37.2. $GO names the go command (default go).
set -euo pipefail
version=${1:-${RDS_CSI_K8S_VERSION:-v1.37.2}}
cache=${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}
go=${GO:-go}

# The version becomes a path and a module query: only vMAJOR.MINOR.PATCH.
if ! [[ $version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
	echo "k8s-bins.sh: version $version is not v1.MINOR.PATCH" >&2
	exit 2
fi
staging_version=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
arch=$($go env GOARCH)
bins=(kubelet kube-apiserver kube-controller-manager kube-scheduler)

dir=$cache/kubernetes-$version-$arch
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi

mkdir -p "$cache"
# One build at a time per entry: a second caller waits, then uses it.
exec 9>"$cache/.kubernetes-$version-$arch.lock"
flock 9
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi
work=$(mktemp -d "$cache/.tmp.k8s.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "k8s-bins.sh: building Kubernetes $version ($arch) into $dir (many minutes)" >&2
start=$(date +%s)

# k8s.io/kubernetes's go.mod names its staging modules.
gomod=$(cd "$work" && GOFLAGS=-mod=mod $go mod download -json "k8s.io/kubernetes@$version" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$gomod" ] || { echo "k8s-bins.sh: no go.mod for k8s.io/kubernetes@$version" >&2; exit 1; }
staging=$(sed -n 's|^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/k8s\.io/[A-Za-z0-9._-]*$|\1|p' "$gomod")
[ -n "$staging" ] || { echo "k8s-bins.sh: $gomod maps no module to ./staging" >&2; exit 1; }

mkdir -p "$work/mod" "$work/out"
{
	echo "module rds-csi-lab/kubernetes"
	echo
	echo "require k8s.io/kubernetes $version"
	echo
	for m in $staging; do echo "replace $m => $m $staging_version"; done
} > "$work/mod/go.mod"

pkgs=()
for b in "${bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
(cd "$work/mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 19 $go build -trimpath -ldflags '-s -w' -o "$work/out/" "${pkgs[@]}")
for b in "${bins[@]}"; do
	[ -x "$work/out/$b" ] || { echo "k8s-bins.sh: $b was not built" >&2; exit 1; }
done
{
	echo "version $version"
	echo "arch $arch"
	echo "go $($go env GOVERSION)"
	echo "seconds $(($(date +%s) - start))"
} > "$work/out/build-info"
cp "$work/mod/go.mod" "$work/out/build-go.mod"
rm -rf "$dir"
mv "$work/out" "$dir"
touch "$dir/ready"
echo "k8s-bins.sh: built in $(($(date +%s) - start)) s" >&2
echo "$dir"
