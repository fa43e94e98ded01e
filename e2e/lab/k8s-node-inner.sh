#!/bin/bash
# k8s-node-inner.sh: the Kubernetes lab node's init (PID 1 in its root, see
# k8s-node.sh); it records its exit status in /out/job.rc and powers off. /out holds what the host prepared: node.env (KUBELET, the
# kubelet binary's path), kubelet.kubeconfig, kubelet-config.yaml, ca.crt,
# images/*.tar and k8s-agent. Runs containerd, imports the images, starts the
# agent and kubelet, and waits for /out/stop; then stops everything it
# started. Logs go to /out/log/.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. /out/node.env
logs=/out/log
mkdir -p $logs
pids=()
stopall() {
	echo "rdslab-k8s: stopping"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null; done
	sleep 3
	# Containers (runc) left by the shims, then everything else of ours.
	pkill -KILL -f containerd-shim 2>/dev/null
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	dmesg > /out/dmesg.txt 2>/dev/null
}
finish() {
	rc=$?
	stopall
	echo "rdslab-k8s: node exited $rc"
	echo $rc > /out/job.rc
	timeout 20 sync
	echo "rdslab: poweroff"
	/bin/busybox poweroff -f
}
trap finish EXIT
mount --make-rshared /

mkdir -p /etc/containerd /etc/cni/net.d /opt/cni
cat > /etc/containerd/config.toml <<'EOF'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "rds-csi.lab/pause:lab"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
EOF
# Pods on a bridge with a fixed subnet (no node IPAM); 10.88.0.1, the
# bridge's own address, is where pods reach the agent's emulator.
cat > /etc/cni/net.d/10-lab.conflist <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "lab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
# The bridge exists (with its address) before the first pod, so that the
# emulator's forwarder can be reached at once.
ip link add cni0 type bridge && ip addr add 10.88.0.1/16 dev cni0 && ip link set cni0 up

containerd --config /etc/containerd/config.toml > $logs/containerd.log 2>&1 &
pids+=($!)
for i in $(seq 1 120); do
	[ -S /run/containerd/containerd.sock ] && ctr version > /dev/null 2>&1 && break
	sleep 1
done
ctr version > /dev/null || { echo "rdslab-k8s: containerd did not start"; tail -20 $logs/containerd.log; exit 1; }
for img in /out/images/*.tar; do
	[ -e "$img" ] || continue
	ctr -n k8s.io images import --all-platforms "$img" > /dev/null || { echo "rdslab-k8s: import $img failed"; exit 1; }
done
ctr -n k8s.io images ls -q | sed 's/^/rdslab-k8s: image /'

# No kube-proxy: the agent serves the kubernetes Service's ClusterIP itself
# (the address is the node's own, so pods reach it through the bridge) and
# forwards it to the apiserver, for the pods that use in-cluster
# configuration (csi-attacher).
ip addr add 10.96.0.1/32 dev lo
/out/k8s-agent > $logs/agent.log 2>&1 &
pids+=($!)

"$KUBELET" --config=/out/kubelet-config.yaml --kubeconfig=/out/kubelet.kubeconfig \
	--hostname-override=rdslab-node --node-ip=10.0.2.15 --v=2 > $logs/kubelet.log 2>&1 &
pids+=($!)
echo "rdslab-k8s: kubelet started"

while [ ! -e /out/stop ]; do
	for p in "${pids[@]}"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "rdslab-k8s: process $p exited early"
			tail -30 $logs/*.log
			exit 1
		fi
	done
	sleep 1
done
echo "rdslab-k8s: stop requested"
exit 0
