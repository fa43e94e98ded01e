package routeros

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestHostKeyAlgorithms: the server is asked for the key types known_hosts
// holds for it (RSA as its SHA-2 signature algorithms), so a server with
// several host keys presents one we can verify.
func TestHostKeyAlgorithms(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rpub, _ := ssh.NewPublicKey(&rk.PublicKey)
	epub, _, _ := ed25519.GenerateKey(rand.Reader)
	epk, _ := ssh.NewPublicKey(epub)
	content := knownhosts.Line([]string{"rds.example"}, rpub) + "\n" +
		knownhosts.Line([]string{"[10.0.0.1]:2222"}, epk) + "\n"
	cb, err := knownHostsCallback([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"rds.example:22":   "[rsa-sha2-512 rsa-sha2-256 ssh-rsa]",
		"10.0.0.1:2222":    "[ssh-ed25519]",
		"10.0.0.1:22":      "[]",
		"other.example:22": "[]",
	} {
		if got := fmt.Sprint(hostKeyAlgorithms(cb, addr)); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}
