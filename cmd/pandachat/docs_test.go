package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/pandachat/pandachat/server"
)

const (
	opsDoc     = "../../docs/operations.md"
	flagsBegin = "<!-- flags:begin (generated from pandachat serve's flag set; PANDA_UPDATE_DOCS=1 go test ./cmd/pandachat rewrites it) -->"
	flagsEnd   = "<!-- flags:end -->"
)

// flagTable renders every serve flag as a Markdown table row.
func flagTable() string {
	var cfg server.Config
	fs, env, _ := serveFlags(&cfg, io.Discard)
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	fs.VisitAll(func(f *flag.Flag) {
		def := "—"
		if f.DefValue != "" {
			def = "`" + f.DefValue + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", f.Name, env[f.Name], def, strings.ReplaceAll(f.Usage, "|", `\|`))
	})
	return b.String()
}

// TestOperationsDocListsEveryFlag keeps the configuration table of
// docs/operations.md equal to the real flag set.
func TestOperationsDocListsEveryFlag(t *testing.T) {
	doc, err := os.ReadFile(opsDoc)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(doc), flagsBegin)
	_, after, ok2 := strings.Cut(rest, flagsEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the flag table markers", opsDoc)
	}
	want := flagTable()
	if strings.TrimSpace(strings.Split(rest, flagsEnd)[0]) == strings.TrimSpace(want) {
		return
	}
	if os.Getenv("PANDA_UPDATE_DOCS") == "1" {
		out := before + flagsBegin + "\n" + want + flagsEnd + after
		if err := os.WriteFile(opsDoc, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("the configuration table in docs/operations.md is out of date; run PANDA_UPDATE_DOCS=1 go test -run TestOperationsDocListsEveryFlag ./cmd/pandachat\nwant:\n%s", want)
}

func TestEveryServeFlagHasAnEnvironmentVariable(t *testing.T) {
	var cfg server.Config
	fs, env, _ := serveFlags(&cfg, io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		if env[f.Name] == "" {
			t.Errorf("--%s has no environment variable", f.Name)
		}
	})
}
