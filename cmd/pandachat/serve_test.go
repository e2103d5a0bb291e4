package main

import (
	"io"
	"strings"
	"testing"
)

// --metrics-addr and --dev-login-rate, from flags and from the environment.
func TestMetricsAddrAndDevLoginRateFlags(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	cfg, _, err := parseServe(nil, none, io.Discard, io.Discard)
	if err != nil || cfg.MetricsAddr != "" || cfg.DevLoginRate.String() != "10/1m0s" {
		t.Fatalf("defaults: metrics-addr %q dev-login-rate %s, %v; want none and 10/1m0s", cfg.MetricsAddr, cfg.DevLoginRate, err)
	}
	env := map[string]string{"PANDA_METRICS_ADDR": "127.0.0.1:9100", "PANDA_DEV_LOGIN_RATE": "off"}
	cfg, _, err = parseServe(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard, io.Discard)
	if err != nil || cfg.MetricsAddr != "127.0.0.1:9100" || !cfg.DevLoginRate.Off || cfg.Metrics == nil {
		t.Fatalf("from the environment: metrics-addr %q dev-login-rate %s metrics %v, %v", cfg.MetricsAddr, cfg.DevLoginRate, cfg.Metrics != nil, err)
	}
	cfg, _, err = parseServe([]string{"--dev-login-rate", "3/30s"}, none, io.Discard, io.Discard)
	if err != nil || cfg.DevLoginRate.Messages != 3 || cfg.DevLoginRate.Per.Seconds() != 30 {
		t.Fatalf("--dev-login-rate 3/30s: %s, %v", cfg.DevLoginRate, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--dev-login-rate", "fast"}, "dev-login-rate"},
		{[]string{"--metrics=false", "--metrics-addr", "127.0.0.1:9100"}, "--metrics-addr"},
	} {
		if _, _, err := parseServe(tt.args, none, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want an error naming %s", tt.args, err, tt.want)
		}
	}
}
