package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pandachat/pandachat/media"
	"github.com/pandachat/pandachat/server"
)

func TestUploadLimitFlags(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	cfg, _, err := parseServe(nil, none, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UploadLimit != 10<<20 || cfg.UploadQuota != (media.Quota{Bytes: 200 << 20, Per: 24 * time.Hour}) || cfg.MinFreeDisk != 1<<30 {
		t.Errorf("defaults: limit %d quota %+v min free %d", cfg.UploadLimit, cfg.UploadQuota, cfg.MinFreeDisk)
	}
	for _, tt := range []struct {
		args  []string
		env   map[string]string
		limit int64
		quota media.Quota
		free  int64
	}{
		{[]string{"--upload-limit", "5MB", "--upload-quota", "50MiB/1h", "--min-free-disk", "2GiB"}, nil,
			5_000_000, media.Quota{Bytes: 50 << 20, Per: time.Hour}, 2 << 30},
		{[]string{"--upload-limit", "1048576"}, map[string]string{"PANDA_UPLOAD_QUOTA": "off", "PANDA_MIN_FREE_DISK": "off"},
			1 << 20, media.Quota{Off: true}, -1},
		{nil, map[string]string{"PANDA_UPLOAD_LIMIT": "1.5MiB", "PANDA_UPLOAD_QUOTA": "1GB/168h", "PANDA_MIN_FREE_DISK": "0"},
			3 << 19, media.Quota{Bytes: 1e9, Per: 168 * time.Hour}, -1},
		// A flag wins over the environment.
		{[]string{"--upload-quota", "1MiB/1m", "--min-free-disk", "100MiB"}, map[string]string{"PANDA_UPLOAD_QUOTA": "off", "PANDA_MIN_FREE_DISK": "off"},
			10 << 20, media.Quota{Bytes: 1 << 20, Per: time.Minute}, 100 << 20},
	} {
		lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
		cfg, _, err := parseServe(tt.args, lookup, io.Discard, io.Discard)
		if err != nil || cfg.UploadLimit != tt.limit || cfg.UploadQuota != tt.quota || cfg.MinFreeDisk != tt.free {
			t.Errorf("%v %v: limit %d quota %+v min free %d, %v; want %d %+v %d",
				tt.args, tt.env, cfg.UploadLimit, cfg.UploadQuota, cfg.MinFreeDisk, err, tt.limit, tt.quota, tt.free)
		}
	}
	// The flag table shows the defaults as they are written.
	fs, env, _ := serveFlags(&server.Config{}, io.Discard)
	for name, want := range map[string]string{"upload-limit": "10MiB", "upload-quota": "200MiB/24h", "min-free-disk": "1GiB"} {
		if f := fs.Lookup(name); f == nil || f.DefValue != want || env[name] == "" {
			t.Errorf("--%s: %+v, environment %q; want default %s", name, f, env[name], want)
		}
	}
}

// A bad value stops the binary with one line that names the flag or variable.
func TestUploadLimitFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--upload-quota", "200MiB"}, "", `invalid value "200MiB" for flag -upload-quota: quota "200MiB": want SIZE/DURATION like 200MiB/24h, or off`},
		{[]string{"--upload-quota", "0/24h"}, "", "-upload-quota"},
		{nil, "PANDA_UPLOAD_QUOTA=lots", "$PANDA_UPLOAD_QUOTA"},
		{[]string{"--min-free-disk", "1XB"}, "", `invalid value "1XB" for flag -min-free-disk: size "1XB": want a number with an optional unit`},
		{[]string{"--min-free-disk", "-1GiB"}, "", "-min-free-disk"},
		{nil, "PANDA_MIN_FREE_DISK=plenty", "$PANDA_MIN_FREE_DISK"},
		{[]string{"--upload-limit", "10 M"}, "", "-upload-limit"},
		{[]string{"--upload-limit", "off"}, "", "-upload-limit"},
		{[]string{"--upload-limit", "0"}, "", "--upload-limit"},
	} {
		cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, tt.args...)...)
		cmd.Env = os.Environ()
		if tt.env != "" {
			cmd.Env = append(cmd.Env, tt.env)
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		text := strings.TrimSpace(out.String())
		if code != 2 || !strings.Contains(text, tt.want) || strings.Contains(text, "\n") {
			t.Errorf("%v %s: exit %d, output:\n%s\nwant exit 2 and one line containing %q", tt.args, tt.env, code, text, tt.want)
		}
	}
}
