//go:build linux || darwin || freebsd

package media

import (
	"math"
	"syscall"
)

// DiskFree is the space on dir's file system that an unprivileged process may
// still use: what Service.MinFreeDisk is checked against.
func DiskFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	avail, bsize := int64(st.Bavail), int64(st.Bsize) // their types differ from system to system
	if avail <= 0 || bsize <= 0 {
		return 0, nil
	}
	if avail > math.MaxInt64/bsize {
		return math.MaxInt64, nil
	}
	return avail * bsize, nil
}
