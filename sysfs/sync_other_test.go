//go:build !linux

package sysfs_test

func syncFS() {}
