package csi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxMessage is a generous bound on an error message or log line about one
// oversized value: far below the values these tests send (64 KiB and more),
// far above what a useful message needs.
const maxMessage = 1024

// distinctOptions returns a valid comma separated list of distinct mount
// options of at least n bytes.
func distinctOptions(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		b.WriteString("o" + strconv.Itoa(i) + ",")
	}
	return b.String()
}

// TestParamsBounded: values and maps past the documented limits are refused
// with InvalidArgument naming the key, and the message quotes a bounded
// prefix of the value, never the value whole.
func TestParamsBounded(t *testing.T) {
	manyKeys := func(n int) map[string]string {
		m := map[string]string{}
		for i := 0; i < n; i++ {
			m[fmt.Sprintf("csi.storage.k8s.io/k%d", i)] = "v"
		}
		return m
	}
	tests := []struct {
		name   string
		set    map[string]string
		errKey string
	}{
		{"mountOptions of 256 KiB", map[string]string{KeyMountOptions: distinctOptions(256 << 10)}, KeyMountOptions},
		{"mountOptions one byte over", map[string]string{KeyMountOptions: strings.Repeat("a", MaxParamValueBytes+1)}, KeyMountOptions},
		{"nqn of 4 MiB", map[string]string{KeyNQN: "nqn.2000-02.com.mikrotik:" + strings.Repeat("x", 4<<20)}, KeyNQN},
		{"bad port of 64 KiB", map[string]string{KeyNVMePort: strings.Repeat("9", 64<<10)}, KeyNVMePort},
		{"bad item late in a long list", map[string]string{KeyMountOptions: distinctOptions(MaxParamValueBytes-100) + "a b"}, KeyMountOptions},
		{"ignored key of 512 KiB", map[string]string{"volumePath": strings.Repeat("/x", 256<<10)}, "parameters"},
		{"many small ignored keys", manyKeys(MaxVolumeContextBytes / 16), "parameters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := validContext()
			for k, v := range tc.set {
				m[k] = v
			}
			_, err := ParseParams(m)
			var pe *ParamError
			if !errors.As(err, &pe) || Code(err) != codes.InvalidArgument {
				t.Fatalf("got %.200v, want an InvalidArgument *ParamError", err)
			}
			if pe.Key != tc.errKey {
				t.Errorf("error names key %q, want %q", pe.Key, tc.errKey)
			}
			if n := len(err.Error()); n > maxMessage {
				t.Errorf("message of %d bytes, want at most %d: %.300s...", n, maxMessage, err)
			}
		})
	}
}

// TestParamsAtTheLimits: a context at every limit is accepted.
func TestParamsAtTheLimits(t *testing.T) {
	m := validContext()
	opts := distinctOptions(MaxParamValueBytes - 10)
	m[KeyMountOptions] = opts
	size := func() int {
		n := 0
		for k, v := range m {
			n += len(k) + len(v)
		}
		return n
	}
	m["volumePath"] = strings.Repeat("/x", (MaxVolumeContextBytes-size()-len("volumePath"))/2)
	if n := size(); n > MaxVolumeContextBytes || n < MaxVolumeContextBytes-1 {
		t.Fatalf("context of %d bytes, want %d", n, MaxVolumeContextBytes)
	}
	p, err := ParseParams(m)
	if err != nil {
		t.Fatalf("%.300v", err)
	}
	if want := strings.Count(opts, ","); len(p.MountOptions) != want {
		t.Errorf("%d mount options, want %d", len(p.MountOptions), want)
	}
}

// TestMergeOptionsLinear merges a quarter million distinct options. The
// quadratic merge (a linear search per item) needs about 3*10^10 string
// comparisons for this and runs into go test's timeout; a linear one takes
// a fraction of a second. The check itself is only the result.
func TestMergeOptionsLinear(t *testing.T) {
	const n = 1 << 18
	items := make([]string, n)
	for i := range items {
		items[i] = "o" + strconv.Itoa(i)
	}
	got := mergeOptions(items[:n/2], items...)
	if len(got) != n || got[n-1] != items[n-1] {
		t.Fatalf("merged %d options (last %q), want %d", len(got), got[len(got)-1], n)
	}
	if got := mergeOptions([]string{"ro"}, "noatime", "ro", "noatime", "discard"); strings.Join(got, ",") != "ro,noatime,discard" {
		t.Errorf("merge = %q, want ro,noatime,discard", got)
	}
}

// TestStageRequestBounded: oversized mount flags and paths are refused with
// InvalidArgument and a bounded message, before any Attach.
func TestStageRequestBounded(t *testing.T) {
	withFlags := func(flags ...string) *csi.VolumeCapability {
		c := mountCap()
		c.GetMount().MountFlags = flags
		return c
	}
	big := strings.Repeat("x", 1<<20)
	tests := []struct {
		name    string
		staging string
		cap     *csi.VolumeCapability
	}{
		{"mount flags of 256 KiB", "", withFlags(strings.Split(distinctOptions(256<<10), ",")...)},
		{"a mount flag of 1 MiB with a space", "", withFlags(big + " x")},
		{"a relative staging path of 1 MiB", big, mountCap()},
		{"a staging path of 1 MiB", "/" + big, mountCap()},
		{"a volume id of 1 MiB", "", mountCap()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			staging := tc.staging
			if staging == "" {
				staging = t.TempDir()
			}
			id := "vol-1"
			if strings.HasPrefix(tc.name, "a volume id") {
				id = big
			}
			_, err := e.node.NodeStageVolume(context.Background(), stageReq(staging, id, tc.cap, validContext()))
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code %v (%.300v), want InvalidArgument", status.Code(err), err)
			}
			if n := len(status.Convert(err).Message()); n > maxMessage {
				t.Errorf("message of %d bytes, want at most %d", n, maxMessage)
			}
			if n := e.vols.attachCount(); n != 0 {
				t.Errorf("%d Attach calls, want 0", n)
			}
		})
	}
}

// TestLoggingInterceptorBounded: a call with a multi-megabyte request is
// logged with a bounded prefix of the request.
func TestLoggingInterceptorBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	ctx := validContext()
	ctx[KeyMountOptions] = strings.Repeat("x", 4<<20)
	req := &csi.NodeStageVolumeRequest{VolumeId: "vol-1", VolumeContext: ctx}
	_, _ = LoggingInterceptor(log)(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Node/NodeStageVolume"},
		func(context.Context, any) (any, error) { return nil, status.Error(codes.InvalidArgument, "bad") })
	if n := buf.Len(); n > maxLoggedRequest+maxMessage {
		t.Errorf("log line of %d bytes, want at most %d", n, maxLoggedRequest+maxMessage)
	}
	if !strings.Contains(buf.String(), "NodeStageVolume") || !strings.Contains(buf.String(), "bytes)") {
		t.Errorf("log line lacks the call's start or its size: %.300s", buf.String())
	}
}
