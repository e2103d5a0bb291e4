//go:build linux || darwin || freebsd

package media

import "syscall"

// DiskFree is the space on dir's file system that an unprivileged process may
// still use: what Service.MinFreeDisk is checked against.
func DiskFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return freeBytes(int64(st.Bavail), int64(st.Bsize)), nil // their types differ from system to system
}
