# k8s-node.sh: the Kubernetes lab node's job (run by the lab guest's busybox
# init as /out/job.sh). It makes the node's root, an overlay of the host's
# root (read-only over 9p) with a tmpfs on top, so that Debian's containerd,
# runc and CNI plugins and the cached kubelet run unchanged; brings up the
# user-mode network (QEMU forwards 10.0.2.100:6443 to the host's apiserver
# and the host's loopback to the agent); and asks the lab's init to switch
# to that root with k8s-node-inner.sh as the new init. The host ends the
# boot by writing /out/stop.
set -u
echo "rdslab-k8s: preparing the node's root"
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
hostname rdslab-node

mkdir -p /rw /root
mount -t tmpfs -o mode=0755 tmpfs /rw || exit 1
mkdir -p /rw/upper /rw/work /rw/root
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /rw/root || {
	echo "rdslab-k8s: overlay of /host failed"
	exit 1
}
r=/rw/root
# Shared, so that kubelet's and the plugin's mounts under /var/lib/kubelet
# propagate both ways (the DaemonSet's Bidirectional mount needs it).
mount --make-rshared $r
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t configfs configfs $r/sys/kernel/config
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs tmpfs $r/dev/shm
mount -t tmpfs tmpfs $r/run
mount -t tmpfs tmpfs $r/tmp
mkdir -p $r/out
mount --bind /out $r/out
# The host's own state must not leak in: fresh directories for what the
# node writes.
for d in var/lib/kubelet var/lib/containerd var/lib/rds-csi var/log/pods var/log/containers etc/cni/net.d etc/containerd etc/nvme; do
	mkdir -p $r/$d
	mount -t tmpfs tmpfs $r/$d
done
# cgroup v2: the controllers kubelet's cgroupfs driver uses.
for c in cpuset cpu io memory pids hugetlb; do
	echo "+$c" > $r/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || echo "rdslab-k8s: cgroup controller $c not enabled"
done
echo "rdslab-k8s: root ready"
echo "/bin/bash /out/k8s-node-inner.sh" > /run/rdslab-switch-root
