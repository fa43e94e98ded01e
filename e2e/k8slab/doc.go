// Package k8slab is the host side of the Kubernetes lab: a control plane
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) on
// 127.0.0.1 for a node that runs in the QEMU guest of package e2e.
//
// Its unit tests need no binaries; tests that start Kubernetes run only when
// RDS_CSI_K8S=1.
package k8slab
