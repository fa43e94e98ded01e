package e2e

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseVerbose(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []TestEvent
		wantErr bool
	}{
		{
			name: "pass fail skip with subtests",
			in: `=== RUN   TestA
--- PASS: TestA (0.01s)
=== RUN   TestB
=== RUN   TestB/sub
    b_test.go:9: boom
    --- FAIL: TestB/sub (0.00s)
--- FAIL: TestB (0.00s)
=== RUN   TestC
    c_test.go:3: no kernel
--- SKIP: TestC (0.00s)
FAIL
`,
			want: []TestEvent{
				{Name: "TestA", Action: "PASS", Output: "--- PASS: TestA (0.01s)\n"},
				{Name: "TestB", Action: "FAIL", Output: "=== RUN   TestB/sub\n    b_test.go:9: boom\n    --- FAIL: TestB/sub (0.00s)\n--- FAIL: TestB (0.00s)\n"},
				{Name: "TestC", Action: "SKIP", Output: "    c_test.go:3: no kernel\n--- SKIP: TestC (0.00s)\n"},
			},
		},
		{
			name: "binary died mid-test",
			in:   "=== RUN   TestA\npanic: x\n",
			want: []TestEvent{{Name: "TestA", Action: "FAIL", Output: "panic: x\n\n"}},
		},
		{name: "nothing ran", in: "testing: warning: no tests to run\nPASS\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVerbose(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}
