//go:build linux

package netwatch

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Watch calls kick on every link and address change until ctx ends, and
// then returns nil. It returns an error when the subscriptions cannot be
// made or end on their own (the error the library reported, if any).
func Watch(ctx context.Context, kick func()) error {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	defer func() {
		close(done)
		// The library's readers block in recvfrom until the next message
		// and then send once more before they see done: drain so they can
		// exit (they close their channel when they do).
		go drain(links)
		go drain(addrs)
	}()
	errs := make(chan error, 2)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: report}); err != nil {
		return fmt.Errorf("netwatch: subscribe to link changes: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: report}); err != nil {
		return fmt.Errorf("netwatch: subscribe to address changes: %w", err)
	}
	linkc, addrc := links, addrs
	for linkc != nil || addrc != nil {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-linkc:
			if !ok {
				linkc = nil
				continue
			}
			kick()
		case _, ok := <-addrc:
			if !ok {
				addrc = nil
				continue
			}
			kick()
		}
	}
	select {
	case err := <-errs:
		return err
	default:
		return fmt.Errorf("netwatch: netlink subscriptions ended")
	}
}

func drain[T any](ch <-chan T) {
	for range ch {
	}
}
