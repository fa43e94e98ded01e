package sysfs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Attribute parsers. Each takes the attribute's content without its trailing
// newline. The strconv calls on string(b) do not allocate: strconv copies the
// input only into the errors it returns.

// attr describes how one attribute file fills a field of T: the rows of the
// attribute tables in controllers.go, subsystems.go and namespaces.go.
type attr[T any] struct {
	name  string
	parse func(v *T, b []byte) error
	// core attributes exist on every kernel and transport: when one is
	// missing the directory is probably being torn down, and the reader
	// checks whether it still exists.
	core bool
}

// core marks an attribute as one every kernel shows.
func core[T any](a attr[T]) attr[T] {
	a.core = true
	return a
}

// textAttr stores the attribute verbatim (edge white space removed).
func textAttr[T any](name string, field func(*T) *string) attr[T] {
	return attr[T]{name: name, parse: func(v *T, b []byte) error {
		*field(v) = intern(bytes.TrimSpace(b))
		return nil
	}}
}

// paddedAttr stores a fixed-width identify string (model, serial,
// firmware_rev), which older kernels print with its space or NUL padding.
func paddedAttr[T any](name string, field func(*T) *string) attr[T] {
	return attr[T]{name: name, parse: func(v *T, b []byte) error {
		*field(v) = string(bytes.TrimSpace(bytes.TrimRight(b, " \x00")))
		return nil
	}}
}

// intAttr stores a decimal integer attribute.
func intAttr[T any](name string, field func(*T) *int) attr[T] {
	return attr[T]{name: name, parse: func(v *T, b []byte) (err error) {
		*field(v), err = parseInt(b)
		return err
	}}
}

// timeoutAttr stores a timeout in seconds that the kernel prints as "off"
// when it is -1 (ctrl_loss_tmo, fast_io_fail_tmo).
func timeoutAttr[T any](name string, field func(*T) *int) attr[T] {
	return attr[T]{name: name, parse: func(v *T, b []byte) (err error) {
		*field(v), err = parseTimeout(b)
		return err
	}}
}

// devAttr stores a "MAJ:MIN" device number.
func devAttr[T any](name string, field func(*T) *DevNum) attr[T] {
	return attr[T]{name: name, parse: func(v *T, b []byte) (err error) {
		*field(v), err = parseDevNum(b)
		return err
	}}
}

func parseInt(b []byte) (int, error) {
	return strconv.Atoi(string(b))
}

// parseTimeout parses a timeout attribute: "off" is -1, anything else a
// decimal integer.
func parseTimeout(b []byte) (int, error) {
	if string(b) == "off" {
		return -1, nil
	}
	return parseInt(b)
}

func parseUint32(b []byte) (uint32, error) {
	v, err := strconv.ParseUint(string(b), 10, 32)
	return uint32(v), err
}

func parseUint64(b []byte) (uint64, error) {
	return strconv.ParseUint(string(b), 10, 64)
}

// parseFlag parses a block-layer boolean attribute ("0" or "1").
func parseFlag(b []byte) (bool, error) {
	switch string(b) {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("not 0 or 1: %q", b)
}

var errDevNum = errors.New(`not "MAJOR:MINOR"`)

// ParseDevNum parses a device number as the dev attribute prints it
// ("245:0"; a trailing newline is allowed).
func ParseDevNum(s string) (DevNum, error) {
	return parseDevNum([]byte(trimNewline(s)))
}

func parseDevNum(b []byte) (DevNum, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return DevNum{}, fmt.Errorf("%w: %q", errDevNum, b)
	}
	maj, err := parseUint32(b[:i])
	if err != nil {
		return DevNum{}, fmt.Errorf("%w: %q: %w", errDevNum, b, err)
	}
	minor, err := parseUint32(b[i+1:])
	if err != nil {
		return DevNum{}, fmt.Errorf("%w: %q: %w", errDevNum, b, err)
	}
	return DevNum{Major: maj, Minor: minor}, nil
}

// intern returns the common short attribute values without allocating.
func intern(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "tcp":
		return "tcp"
	case "rdma":
		return "rdma"
	case "fc":
		return "fc"
	case "loop":
		return "loop"
	case "pcie":
		return "pcie"
	case "io":
		return "io"
	case "discovery":
		return "discovery"
	case "admin":
		return "admin"
	case "nvm":
		return "nvm"
	case "numa":
		return "numa"
	case "round-robin":
		return "round-robin"
	case "queue-depth":
		return "queue-depth"
	case "optimized":
		return "optimized"
	case "non-optimized":
		return "non-optimized"
	case "inaccessible":
		return "inaccessible"
	case "persistent-loss":
		return "persistent-loss"
	case "change":
		return "change"
	}
	return string(b)
}

// ControllerInstance parses a controller name as the kernel makes it,
// "nvme" and the instance number in plain decimal (drivers/nvme/host/core.c
// names it "nvme%d" after an ida number): "nvme12" is 12. ok is false for
// anything else, including a sign, leading zeros ("nvme01") and numbers
// above 2147483647. It is the one parse of controller names: fabrics (the
// reply "instance=N", Disconnect), the daemon and this package use it.
func ControllerInstance(name string) (n int, ok bool) {
	return instanceOf(name, "nvme")
}

// instanceOf parses the instance number that follows prefix in a kernel
// object name ("nvme-subsys3" with prefix "nvme-subsys" is 3), by the rule
// ControllerInstance documents.
func instanceOf(name, prefix string) (int, bool) {
	digits, ok := strings.CutPrefix(name, prefix)
	if !ok || !allDigits(digits) || len(digits) > 10 || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(digits); i++ {
		n = n*10 + int(digits[i]-'0')
	}
	if n > math.MaxInt32 {
		return 0, false
	}
	return n, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
