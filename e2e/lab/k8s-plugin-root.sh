#!/usr/bin/env bash
# k8s-plugin-root.sh SUITE PACKAGE...: build (once, cached) the root
# filesystem of the lab's rds-csi plugin image and print its directory.
#
# The root is what the Dockerfile's runtime stage is: a Debian SUITE minbase
# (debootstrap --variant=minbase, close to debian:SUITE-slim) with PACKAGEs
# installed by `apt-get install --no-install-recommends` inside it, then the
# apt lists removed. The caller (e2e/k8slab) takes the packages from the
# Dockerfile. Like the slim image, it keeps no documentation, man pages or
# locales (dpkg path-exclude), and it has no /dev, /proc or /sys contents
# (the runtime mounts them).
#
# The cache, outside the repository, is keyed on what decides the contents:
#   ${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}/plugin-root-HASH/root
# where HASH covers the suite, the sorted packages, the mirror, the
# architecture and this script's recipe version. A directory is used only when
# its file `ready` exists (written last); a half-built one is built again.
# $RDS_CSI_LAB_MIRROR names the Debian mirror (default http://deb.debian.org/debian).
# Runs as root (debootstrap and chroot need it), under nice.
set -euo pipefail
if [ $# -lt 2 ]; then
	echo "usage: k8s-plugin-root.sh SUITE PACKAGE..." >&2
	exit 2
fi
suite=$1
shift
cache=${RDS_CSI_LAB_CACHE:-/var/cache/rds-csi-lab}
mirror=${RDS_CSI_LAB_MIRROR:-http://deb.debian.org/debian}
recipe=2 # bump when the steps below change what the root holds

# Names become paths and arguments: only Debian package and suite names.
[[ $suite =~ ^[a-z]+$ ]] || { echo "k8s-plugin-root.sh: suite $suite is not a Debian suite name" >&2; exit 2; }
for p in "$@"; do
	[[ $p =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || { echo "k8s-plugin-root.sh: $p is not a Debian package name" >&2; exit 2; }
done
pkgs=$(printf '%s\n' "$@" | sort -u)
arch=$(dpkg --print-architecture)
hash=$(printf 'recipe %s\nsuite %s\nmirror %s\narch %s\npackages\n%s\n' "$recipe" "$suite" "$mirror" "$arch" "$pkgs" |
	sha256sum | cut -c1-16)

dir=$cache/plugin-root-$hash
if [ -f "$dir/ready" ]; then echo "$dir/root"; exit 0; fi

mkdir -p "$cache"
# One build at a time per entry: a second caller waits, then uses it.
exec 9>"$cache/.plugin-root-$hash.lock"
flock 9
if [ -f "$dir/ready" ]; then echo "$dir/root"; exit 0; fi
work=$(mktemp -d "$cache/.tmp.plugin-root.XXXXXX")
chmod 0755 "$work" # mktemp makes it 0700; the entry is read by others too
cleanup() {
	# A failed chroot step may leave /proc mounted in the work tree.
	umount "$work/root/proc" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
echo "k8s-plugin-root.sh: building the plugin root ($suite + $(echo $pkgs)) into $dir (minutes)" >&2
start=$(date +%s)

root=$work/root
nice -n 10 debootstrap --variant=minbase --arch="$arch" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	[ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
	exit 1
}

# What debian:SUITE-slim keeps out (its /etc/dpkg/dpkg.cfg.d/docker).
cat >"$root/etc/dpkg/dpkg.cfg.d/rds-csi-lab-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
# The image's apt sources, as in the Debian image: the suite, its updates and security.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
# No daemons start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

mount -t proc proc "$root/proc"
# shellcheck disable=SC2086 # $pkgs is a list of checked package names
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
	nice -n 10 sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $(echo $pkgs)" \
	>"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$work/packages"
umount "$root/proc"

# What the Dockerfile removes, what apt and debootstrap leave, and what the
# runtime provides.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d" "$root/debootstrap" \
	"$root"/var/log/* "$root"/var/cache/ldconfig/* "$root"/tmp/* "$root"/run/* \
	"$root"/dev/* "$root"/proc/* "$root"/sys/*
# What the slim image drops of the packages debootstrap installed before the
# path-excludes above were in place.
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/groff/* "$root"/usr/share/info/* \
	"$root"/usr/share/lintian/* "$root"/usr/share/linda/* "$root"/usr/share/locale/*
for p in "$@"; do
	grep -q "^$p " "$work/packages" || { echo "k8s-plugin-root.sh: $p is not installed" >&2; exit 1; }
done

{
	echo "suite $suite"
	echo "mirror $mirror"
	echo "arch $arch"
	echo "recipe $recipe"
	echo "packages $(echo $pkgs)"
	echo "seconds $(($(date +%s) - start))"
} >"$work/build-info"
rm -f "$work/debootstrap.log" "$work/apt.log"
rm -rf "$dir"
mv "$work" "$dir"
touch "$dir/ready"
trap - EXIT
echo "k8s-plugin-root.sh: built in $(($(date +%s) - start)) s" >&2
echo "$dir/root"
