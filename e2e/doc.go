// Package e2e is the real-kernel lab: it boots stock Debian 6.1 and 6.12
// kernels under QEMU (TCG) with the kernel's own NVMe/TCP target (nvmet) on
// loopback, runs Go test binaries built on the host inside the guest, and
// reports their results as subtests of the host's `go test`.
//
// The host tests here run only when RDS_CSI_E2E=1 (make e2e sets it); they
// need qemu-system-x86, busybox-static, kmod, cpio and xz-utils, and fetch the
// kernel packages with apt on first use into RDS_CSI_LAB_CACHE (default
// /var/cache/rds-csi-lab). The guest-side tests live in e2e/kerneltest and
// skip unless they run inside the lab (RDS_CSI_LAB=1).
package e2e
