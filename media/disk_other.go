//go:build !(linux || darwin || freebsd)

package media

import "errors"

// DiskFree is unknown here; uploads then go on until the disk itself refuses them.
func DiskFree(string) (int64, error) {
	return 0, errors.New("free disk space cannot be read on this system")
}
