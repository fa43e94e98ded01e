package routeros

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The nodes a volume is published to (CSI ControllerPublishVolume) are kept
// on the RDS itself, in the disk's comment, so that they survive a
// controller restart and a second controller sees them:
//
//	rds-csi:published:<node>[/<node>]
//
// A comment is only ever written on a disk of ours (IsVolumeSlot), and only
// in this form (or empty). Node names are from [A-Za-z0-9._-] (every
// Kubernetes node name is), so the comment needs no quoting in RouterOS and
// cannot add an argument. Whether RouterOS prints a /disk comment the way
// the parser reads it (";;; text" on the entry's first line) is unverified
// on hardware: SetDiskComment reads it back and anything else is
// ErrUnconfirmed.
const (
	PublishedPrefix = "rds-csi:published:"
	// MaxPublished bounds the nodes one volume is published to at once.
	MaxPublished = 2
	// MaxNodeNameLen is the longest node name a publish record holds (a
	// Kubernetes node name is a DNS subdomain: at most 253).
	MaxNodeNameLen = 253
	// MaxCommentLen bounds a comment this package writes.
	MaxCommentLen = len(PublishedPrefix) + MaxPublished*(MaxNodeNameLen+1)
)

const ruleNodeName = "1 to 253 characters from [A-Za-z0-9._-], starting and ending with a letter or digit"

// ValidateNodeName checks a node name put into a publish record.
func ValidateNodeName(name string) error {
	if name == "" || len(name) > MaxNodeNameLen || !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return invalid("node", name, ruleNodeName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '.' && c != '_' && c != '-' {
			return invalid("node", name, ruleNodeName)
		}
	}
	return nil
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// PublishedComment is the comment recording nodes (at most MaxPublished,
// each ValidateNodeName, no duplicate); no node is the empty comment.
func PublishedComment(nodes []string) (string, error) {
	if len(nodes) == 0 {
		return "", nil
	}
	if len(nodes) > MaxPublished {
		return "", invalid("comment", strings.Join(nodes, "/"), fmt.Sprintf("at most %d nodes", MaxPublished))
	}
	for i, n := range nodes {
		if err := ValidateNodeName(n); err != nil {
			return "", err
		}
		if slices.Contains(nodes[:i], n) {
			return "", invalid("node", n, "each node once")
		}
	}
	return PublishedPrefix + strings.Join(nodes, "/"), nil
}

// ParsePublished reads a disk comment: the nodes of a publish record, none
// for an empty comment. Any other comment (one this driver did not write)
// is an error wrapping ErrNotOwned: it is never overwritten.
func ParsePublished(comment string) ([]string, error) {
	if comment == "" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(comment, PublishedPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: comment %q is not a publish record of rds-csi", ErrNotOwned, bounded(comment))
	}
	nodes := strings.Split(rest, "/")
	if c, err := PublishedComment(nodes); err != nil || c != comment {
		return nil, fmt.Errorf("%w: comment %q is not a well-formed publish record (%s<node>[/<node>])", ErrUnexpectedOutput, bounded(comment), PublishedPrefix)
	}
	return nodes, nil
}

func bounded(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// SetCommentCommand sets a disk's comment to a publish record
// (PublishedComment form, or empty):
//
//	/disk set [find slot="<slot>"] comment="<comment>"
func SetCommentCommand(slot, comment string) (Command, error) {
	if err := ValidateSlot(slot); err != nil {
		return Command{}, err
	}
	if _, err := ParsePublished(comment); err != nil {
		return Command{}, invalid("comment", comment, PublishedPrefix+"<node>[/<node>], or empty")
	}
	return Command{verb: "disk-set", line: "/disk set " + findSlot(slot) + " comment=" + quote(comment)}, nil
}

// SetPublished records nodes as the ones a volume disk is published to
// (none: clears the record) and reads the disk back: a comment that does
// not read back exactly is ErrUnconfirmed. Only a disk of ours is changed
// (a record only on a volume's, IsVolumeSlot; clearing also on a
// snapshot's), and only when its comment is empty or a publish record
// (ParsePublished), never another comment.
func (c *Client) SetPublished(ctx context.Context, slot string, nodes []string) (Disk, error) {
	if err := checkOwnedSlot(slot); err != nil {
		return Disk{}, err
	}
	if len(nodes) > 0 && !IsVolumeSlot(slot) {
		return Disk{}, invalid("slot", slot, "a volume's slot (SlotFor)")
	}
	comment, err := PublishedComment(nodes)
	if err != nil {
		return Disk{}, err
	}
	cmd, err := SetCommentCommand(slot, comment)
	if err != nil {
		return Disk{}, err
	}
	d, err := c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, err
	}
	if _, err := ParsePublished(d.Comment); err != nil {
		return d, err
	}
	if d.Comment == comment {
		return d, nil
	}
	if _, err := c.exec(ctx, cmd); err != nil && !errors.Is(err, ErrNotFound) {
		return Disk{}, err
	}
	d, err = c.Disk(ctx, slot)
	if err != nil {
		return Disk{}, confirmErr("set comment", slot, err)
	}
	if d.Comment != comment {
		return d, fmt.Errorf("%w: disk %s: comment reads %q after setting %q", ErrUnconfirmed, slot, bounded(d.Comment), comment)
	}
	return d, nil
}
