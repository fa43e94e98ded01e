#!/usr/bin/env bash
# nvme-cli.sh: Debian's nvme-cli, for the lab's comparison only (the driver
# never uses it). The packages are fetched with `apt-get download` and
# unpacked with `dpkg -x` (never installed) into the cache, and the directory
# holding usr/sbin/nvme is printed. The guest runs it chrooted into the host
# root with LD_LIBRARY_PATH pointing at the unpacked libraries (libnvme1 and
# friends), so the host needs none of them installed.
set -euo pipefail
cache=${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}
dir=$cache/nvme-cli
if [ -f "$dir/ready" ]; then echo "$dir"; exit 0; fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
pkgs="nvme-cli libnvme1 libjson-c5 libdbus-1-3"
echo "nvme-cli.sh: fetching $pkgs" >&2
(cd "$work" && { apt-get download -q $pkgs >&2 || { apt-get update -qq >&2 && apt-get download -q $pkgs >&2; }; })
mkdir -p "$work/root"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
test -x "$work/root/usr/sbin/nvme"
dpkg-deb -f "$work"/nvme-cli_*.deb Version > "$work/root/version"
rm -rf "$dir"
mv "$work/root" "$dir"
touch "$dir/ready"
echo "$dir"
