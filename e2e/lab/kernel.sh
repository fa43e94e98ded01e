#!/usr/bin/env bash
# kernel.sh SERIES: make a stock Debian kernel of SERIES (6.1 or 6.12) ready for
# the QEMU lab and print the directory that holds it:
#   DIR/vmlinuz, DIR/kver, DIR/lib/modules/KVER (with modules.dep).
# The kernel package is fetched with `apt-get download` and unpacked with
# `dpkg -x` (never installed) into the cache, outside the repository:
#   ${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}/kernel-<package version>.
# Pin a package with RDS_CSI_KERNEL_6_1 / RDS_CSI_KERNEL_6_12 (a package name);
# by default the newest package apt offers is used, so versions may move.
set -euo pipefail
series=${1:?usage: kernel.sh 6.1|6.12}
cache=${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}
mkdir -p "$cache"

case $series in
6.1)  pin=${RDS_CSI_KERNEL_6_1:-};  pattern='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
6.12) pin=${RDS_CSI_KERNEL_6_12:-}; pattern='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' ;;
*) echo "kernel.sh: unknown series $series (want 6.1 or 6.12)" >&2; exit 2 ;;
esac

pick() {
	# Newest package of the series that has an install candidate.
	apt-cache search --names-only "$pattern" | awk '{print $1}' | sort -V -r |
		while read -r p; do
			cand=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')
			case $cand in [0-9]*) echo "$p"; break ;; esac
		done
}

pkg=$pin
if [ -z "$pkg" ]; then
	# Reuse a cached kernel of this series when apt has nothing (offline, or
	# package lists not fetched yet).
	pkg=$(pick || true)
	if [ -z "$pkg" ]; then
		apt-get update -qq >&2 || true
		pkg=$(pick || true)
	fi
fi
if [ -z "$pkg" ]; then
	cached=$(ls -d "$cache"/linux-image-"$series"[.-]*/ready 2>/dev/null | sort -V | tail -n1 || true)
	[ -n "$cached" ] || { echo "kernel.sh: no $series kernel package in apt and none cached" >&2; exit 1; }
	dirname "$cached"
	exit 0
fi

dir=$cache/$pkg
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi

work=$(mktemp -d "$cache/.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "kernel.sh: fetching $pkg" >&2
(cd "$work" && apt-get download -q "$pkg" >&2)
deb=$(ls "$work"/*.deb)
dpkg -x "$deb" "$work/root"
kver=$(ls "$work/root/lib/modules")
mkdir -p "$work/out/lib/modules"
cp "$work/root/boot/vmlinuz-$kver" "$work/out/vmlinuz"
mv "$work/root/lib/modules/$kver" "$work/out/lib/modules/$kver"
# busybox insmod cannot read compressed modules: decompress all of them once.
find "$work/out/lib/modules/$kver" -name '*.ko.xz' -exec xz -d -T0 {} +
find "$work/out/lib/modules/$kver" -name '*.ko.zst' -exec sh -c 'for f; do zstd -q -d --rm "$f"; done' sh {} +
depmod -b "$work/out" "$kver"
echo "$kver" > "$work/out/kver"
echo "$pkg" > "$work/out/package"
rm -rf "$dir"
mv "$work/out" "$dir"
touch "$dir/ready"
echo "$dir"
