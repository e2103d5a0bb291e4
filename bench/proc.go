package bench

import (
	"bytes"
	"os"
	"strconv"
)

// ProcStats is what /proc tells about a process.
type ProcStats struct {
	RSS        int64   // resident set size, bytes
	CPUSeconds float64 // user + system time
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// ReadProc reads /proc/pid/status and /proc/pid/stat; pid 0 is this process.
func ReadProc(pid int) (ProcStats, error) {
	dir := "/proc/self/"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid) + "/"
	}
	var s ProcStats
	status, err := os.ReadFile(dir + "status")
	if err != nil {
		return s, err
	}
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
				s.RSS = kb << 10
			}
		}
	}
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return s, err
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'; utime and stime are fields 14 and 15.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
		f := bytes.Fields(stat[i+1:])
		if len(f) > 13 {
			u, _ := strconv.ParseFloat(string(f[11]), 64)
			st, _ := strconv.ParseFloat(string(f[12]), 64)
			s.CPUSeconds = (u + st) / clockTicks
		}
	}
	return s, nil
}
