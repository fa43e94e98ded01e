package sysfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/sysfs"
)

func TestMultipath(t *testing.T) {
	t.Parallel()
	const param = "module/nvme_core/parameters/multipath"
	tests := []struct {
		name    string
		files   map[string]string // relative path -> content; a path ending in / is a directory
		want    bool
		wantErr func(error) bool
	}{
		{name: "on", files: map[string]string{param: "Y\n"}, want: true},
		{name: "off", files: map[string]string{param: "N\n"}, want: false},
		{name: "built without multipath", files: map[string]string{"module/nvme_core/parameters/": ""}, want: false},
		{name: "nvme_core not loaded", files: nil, wantErr: func(err error) bool { return errors.Is(err, sysfs.ErrNotExist) }},
		{name: "garbage", files: map[string]string{param: "maybe\n"}, wantErr: notNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			for rel, content := range tt.files {
				p := filepath.Join(root, rel)
				if rel[len(rel)-1] == '/' {
					if err := os.MkdirAll(p, 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := sysfs.NewFS(root).Multipath()
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Errorf("Multipath() error = %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Multipath() = %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}
