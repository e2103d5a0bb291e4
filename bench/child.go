package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

var listeningRE = regexp.MustCompile(`listening on (http://\S+)`)

// Child is a server process started from this binary (`serve ...` or
// `bench baseline ...`), ready once it printed its "listening on" line.
type Child struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	tail []string // last lines of its stderr, for error messages
}

// StartChild runs this executable with args and waits until it listens.
func StartChild(ctx context.Context, args ...string) (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return StartCommand(ctx, exe, args...)
}

// StartCommand runs exe with args and waits until it prints its
// "listening on http://..." line on stderr.
func StartCommand(ctx context.Context, exe string, args ...string) (*Child, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Child{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.tail = append(c.tail, line)
			if len(c.tail) > 20 {
				c.tail = c.tail[1:]
			}
			c.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(c.done)
	}()
	select {
	case c.URL = <-found:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s %s exited before listening: %s", exe, strings.Join(args, " "), c.lastLines())
	case <-time.After(30 * time.Second):
		c.Stop()
		return nil, fmt.Errorf("%s %s did not print a listening line within 30 s: %s", exe, strings.Join(args, " "), c.lastLines())
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
}

func (c *Child) lastLines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, " | ")
}

// PID is the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Stop sends SIGTERM, waits up to 10 s, then kills.
func (c *Child) Stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("server %d did not exit on SIGTERM within 10 s; killed", c.PID())
	}
	if s := c.cmd.ProcessState; s != nil && !s.Success() {
		return fmt.Errorf("server exited with %v: %s", s, c.lastLines())
	}
	return nil
}
