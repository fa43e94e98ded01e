package fabrics

import (
	"cmp"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"syscall"
)

// deviceFile is an open descriptor of the fabrics device.
type deviceFile interface {
	io.Reader
	io.Writer
	io.Closer
}

// opener opens the fabrics device read-write; tests replace it with a fake.
type opener func(path string) (deviceFile, error)

// maxReply bounds a read of the fabrics device (the 6.12 option list is
// about 500 bytes).
const maxReply = 64 << 10

// Client creates controllers through the fabrics device and manages them
// through sysfs. It is safe for concurrent use; the kernel serialises
// connect writes itself.
type Client struct {
	path    string
	sys     ControllerSource
	open    opener
	release func() string // kernel release, for messages

	mu        sync.Mutex
	probed    bool
	supported OptionSet
	probeErr  error
}

// NewClient returns a Client for the fabrics device at devicePath (""
// means DefaultDevicePath) that finds and changes controllers through sys
// (normally a sysfs.FS). Nothing is opened until it is needed.
func NewClient(devicePath string, sys ControllerSource) *Client {
	return &Client{
		path:    cmp.Or(devicePath, DefaultDevicePath),
		sys:     sys,
		open:    openDevice,
		release: kernelRelease,
	}
}

// SupportedOptions returns the options the running kernel lists when a fresh
// descriptor of the fabrics device is read. The first successful probe is
// cached; a failed one (for example the module not loaded yet:
// ErrFabricsUnavailable) is retried on the next call. A kernel that refuses
// the read (EINVAL, old kernels) or returns a list this package cannot parse
// gives an unknown set (Known false), cached as well; in the second case the
// error, wrapping ErrUnexpectedReply, is returned with it.
func (c *Client) SupportedOptions(ctx context.Context) (OptionSet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.probed {
		return c.supported, c.probeErr
	}
	if err := ctx.Err(); err != nil {
		return OptionSet{}, &opError{op: "probe options", err: err}
	}
	set, cache, err := c.probeLocked()
	if cache {
		c.probed, c.supported, c.probeErr = true, set, err
	}
	return set, err
}

// probeLocked reads the option list from a fresh descriptor. cache reports
// whether the outcome is final.
func (c *Client) probeLocked() (set OptionSet, cache bool, err error) {
	const op = "probe options"
	f, err := c.open(c.path)
	if err != nil {
		return OptionSet{}, false, openError(op, err)
	}
	defer f.Close()
	list, err := io.ReadAll(io.LimitReader(f, maxReply))
	if errors.Is(err, syscall.EINVAL) {
		return OptionSet{}, true, nil // old kernel: unknown, do not filter
	}
	if err != nil {
		return OptionSet{}, false, &opError{op: op, err: err}
	}
	set, err = ParseSupported(string(list))
	if err != nil {
		return OptionSet{}, true, &opError{op: op, err: err}
	}
	return set, true, nil
}

// Connect creates a controller: it validates opts, refuses options the
// running kernel does not list (ErrUnsupportedOption), opens the fabrics
// device, writes the option string once and reads back the new controller's
// instance and cntlid.
//
// ctx is checked before the write only: the kernel's connect cannot be
// interrupted and blocks for as long as the transport needs (about 10 s
// against a target that never answers, and connects are serialised
// kernel-wide). Once the write succeeded the controller exists, and Connect
// returns it even if ctx is done by then.
//
// When the kernel answers EALREADY (an identical controller exists, possibly
// reconnecting), Connect looks for it in sysfs and returns it with Adopted
// set; if none matches (it vanished in between) the error wraps
// ErrAlreadyConnected. Other failures wrap the sentinel for their errno (see
// the package documentation) and the errno itself.
func (c *Client) Connect(ctx context.Context, opts Options) (Controller, error) {
	wire, err := opts.optionString()
	if err != nil {
		return Controller{}, err
	}
	op := "connect " + describe(&opts)
	if err := ctx.Err(); err != nil {
		return Controller{}, &opError{op: op, err: err}
	}
	set, err := c.SupportedOptions(ctx)
	if err != nil && !errors.Is(err, ErrUnexpectedReply) {
		return Controller{}, err
	}
	if err := opts.checkSupported(set, c.path, c.release()); err != nil {
		return Controller{}, err
	}
	if err := ctx.Err(); err != nil {
		return Controller{}, &opError{op: op, err: err}
	}
	ctrl, err := c.create(op, wire)
	if errors.Is(err, ErrAlreadyConnected) {
		return c.adopt(&opts, err)
	}
	return ctrl, err
}

// create performs the single write and the reply read on a fresh descriptor.
func (c *Client) create(op, wire string) (Controller, error) {
	f, err := c.open(c.path)
	if err != nil {
		return Controller{}, openError(op, err)
	}
	defer f.Close()
	n, err := f.Write([]byte(wire))
	if err != nil {
		return Controller{}, writeError(op, err)
	}
	if n != len(wire) {
		return Controller{}, &opError{op: op, err: io.ErrShortWrite}
	}
	reply, err := io.ReadAll(io.LimitReader(f, maxReply))
	if err != nil {
		return Controller{}, &opError{op: op, kind: ErrUnexpectedReply, err: err}
	}
	ctrl, err := ParseReply(string(reply))
	if err != nil {
		return Controller{}, &opError{op: op, err: err}
	}
	return ctrl, nil
}

// checkSupported refuses the first option o sends that set does not list.
// An unknown set filters nothing.
func (o *Options) checkSupported(set OptionSet, path, release string) error {
	if !set.Known() {
		return nil
	}
	kernel := "the running kernel"
	if release != "" {
		kernel += " (" + release + ")"
	}
	for i := range fields {
		f := &fields[i]
		s, n, ok := f.get(o)
		if !ok || set.Has(f.key) {
			continue
		}
		switch f.kind {
		case kindNum:
			s = strconv.Itoa(n)
		case kindSecret:
			s = redacted
		}
		return &OptionError{Field: f.key, Value: s, Allowed: kernel + " does not list it in " + path, unsupported: true}
	}
	return nil
}

// describe names the target of a connect for errors, without secrets.
func describe(o *Options) string {
	port := strconv.Itoa(cmp.Or(o.Trsvcid, DefaultPort))
	return cmp.Or(o.Transport, DefaultTransport) + " " + HostPort(o.Traddr, port) + " " + o.NQN
}

// errnoOf returns the errno err wraps, or 0.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

func openError(op string, err error) error {
	return &opError{op: op, kind: openErrorKind(errnoOf(err)), err: err}
}

func writeError(op string, err error) error {
	k := writeErrorKind(errnoOf(err))
	if k == ErrInvalidOption {
		op += " (the kernel refused the option string; its log names the reason)"
	}
	return &opError{op: op, kind: k, err: err}
}
