#!/usr/bin/env bash
# initramfs.sh KDIR OUT [EXTRA]: write a plain newc initramfs to OUT for the kernel
# prepared by kernel.sh in KDIR: static busybox, the lab's /init and the
# module closure the lab needs (NVMe/TCP host and target, null_blk, loop,
# ext4, xfs, configfs, 9p over virtio, netem, veth), and the EXTRA modules
# (a space-separated list, e.g. the Kubernetes node's overlay, bridge and
# virtio_net).
set -euo pipefail
kdir=${1:?usage: initramfs.sh KDIR OUT [EXTRA]}
out=${2:?usage: initramfs.sh KDIR OUT [EXTRA]}
extra=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
kver=$(cat "$kdir/kver")
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
	busybox=/bin/busybox
[ -x "$busybox" ] || { echo "initramfs.sh: static busybox missing (apt-get install busybox-static)" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,host,out,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/init" "$root/init"
chmod 0755 "$root/init"

modules="configfs nvme-tcp nvmet-tcp null_blk loop ext4 xfs 9p 9pnet_virtio virtio_pci virtio_blk
	sch_netem crc32c_generic crc32c-intel veth tls $extra"
: > "$root/lib/modules/order"
for m in $modules; do
	# --show-depends lists the closure in load order; "builtin" ones need nothing.
	modprobe -S "$kver" -d "$kdir" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r path; do
	f=$path
	base=$(basename "$path")
	cp "$f" "$root/lib/modules/$base"
	echo "$base" >> "$root/lib/modules/order"
done
echo "$kver" > "$root/etc/kver"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) > "$out.tmp"
mv "$out.tmp" "$out"
