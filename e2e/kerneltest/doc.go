// Package kerneltest holds the real-kernel tests of the fabrics and sysfs
// packages. They run inside the QEMU lab (package e2e boots the guest and
// runs this package's test binary there) against the kernel's own NVMe/TCP
// target on loopback, and skip anywhere else.
package kerneltest
