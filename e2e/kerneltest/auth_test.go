//go:build linux

package kerneltest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"syscall"
	"testing"

	"github.com/srvlab/rds-csi/e2e/nvmet"
	"github.com/srvlab/rds-csi/fabrics"
)

// dhchapSecret makes a DH-HMAC-CHAP secret representation of a 32-byte key
// filled with b: DHHC-1:00:<base64(key || crc32(key) little endian)>:.
func dhchapSecret(b byte) fabrics.Secret {
	key := bytes.Repeat([]byte{b}, 32)
	key = binary.LittleEndian.AppendUint32(key, crc32.ChecksumIEEE(key))
	return fabrics.Secret("DHHC-1:00:" + base64.StdEncoding.EncodeToString(key) + ":")
}

// TestAuth covers the DH-HMAC-CHAP rows of the errno table on 6.12: no secret
// (ENOKEY), a wrong host secret and a wrong controller secret (EKEYREJECTED),
// and the right ones. No error message may contain a secret.
func TestAuth(t *testing.T) {
	tg := target(t)
	if kernelSeries() == "6.1" {
		t.Skip("Linux 6.1 has no NVMe in-band authentication (it lists the options but ignores them)")
	}
	hostKey, ctrlKey, wrong := dhchapSecret(0x11), dhchapSecret(0x22), dhchapSecret(0x33)
	nqn, port := uniqueNQN("auth"), nextPort()
	dev, err := tg.NullBlk(16)
	must(t, err)
	must(t, tg.AddSubsystem(nvmet.Subsystem{NQN: nqn, AllowAnyHost: false}))
	must(t, tg.AddNamespace(nqn, nvmet.Namespace{NSID: 1, Device: dev}))
	must(t, tg.AllowHost(nqn, nvmet.Host{NQN: labHostNQN, DHCHAPKey: string(hostKey), CtrlKey: string(ctrlKey)}))
	must(t, tg.AddPort(nvmet.Port{ID: port, Traddr: "127.0.0.1", Trsvcid: port}))
	must(t, tg.Link(port, nqn))
	c, fs := client()

	cases := []struct {
		name       string
		host, ctrl fabrics.Secret
		errno      syscall.Errno // 0: success
	}{
		{"no secret", "", "", syscall.ENOKEY},
		{"wrong host secret", wrong, "", syscall.EKEYREJECTED},
		{"wrong controller secret", hostKey, wrong, syscall.EKEYREJECTED},
		{"host secret only", hostKey, "", 0},
		{"bidirectional", hostKey, ctrlKey, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOpts(nqn, port)
			o.DHCHAPSecret, o.DHCHAPCtrlSecret = tc.host, tc.ctrl
			before := controllerNames(t, fs)
			ctrl, err := c.Connect(context.Background(), o)
			if tc.errno == 0 {
				must(t, err)
				must(t, c.Disconnect(ctrl.Name))
				return
			}
			checkErrno(t, err, errnoCase{fabrics.ErrAuth, tc.errno, false})
			for _, s := range []fabrics.Secret{hostKey, ctrlKey, wrong} {
				if strings.Contains(err.Error(), string(s)) || strings.Contains(o.Redacted(), string(s)) {
					t.Errorf("a secret leaked into %q / %q", err, o.Redacted())
				}
			}
			noControllerLeft(t, fs, before)
			if errors.Is(err, fabrics.ErrUnreachable) {
				t.Errorf("an auth failure must not look retryable: %v", err)
			}
		})
	}
}
