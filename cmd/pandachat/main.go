// Command pandachat is the Panda chat room server and its tools.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/pandachat/pandachat/bench"
	"github.com/pandachat/pandachat/internal/guard"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `pandachat — real-time chat rooms for WeChat mini-programs and browsers

Usage:
  pandachat [serve] [flags]   run the server (the default command)
  pandachat bench [flags]     broadcast load generator; --suite runs the benchmark suite
  pandachat backup --out FILE [--data DIR]
                              archive the store and media (online through the
                              running server's admin socket, else offline)
  pandachat restore --in FILE --data DIR
                              unpack an archive into a new, empty data directory
  pandachat healthcheck       exit 0 when the local server answers /healthz
  pandachat version           print the version

Run "pandachat COMMAND --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { // a second signal ends the process at once
		defer guard.Recover(nil, "signal watcher", nil)
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line; it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stdout, stderr)
	case "bench":
		return bench.Main(ctx, args, stdout, stderr)
	case "backup":
		return backup(ctx, args, stdout, stderr)
	case "restore":
		return restore(args, os.Stdin, stderr)
	case "healthcheck":
		return healthcheck(ctx, args, stderr)
	case "version":
		fmt.Fprintln(stdout, "pandachat", version)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "pandachat: unknown command %q (see pandachat help)\n", cmd)
		return 2
	}
}
