package main

import (
	"strings"

	"github.com/pandachat/pandachat/media"
)

// sizeFlag is a byte count written like 10MiB, 1GiB or 500MB; a plain number is bytes.
// With off, "off" and 0 store -1 (no limit).
type sizeFlag struct {
	p   *int64
	off bool
}

func (f sizeFlag) String() string {
	switch {
	case f.p == nil:
		return ""
	case f.off && *f.p < 0:
		return "off"
	}
	return media.FormatSize(*f.p)
}

func (f sizeFlag) Set(s string) error {
	if f.off && strings.EqualFold(strings.TrimSpace(s), "off") {
		*f.p = -1
		return nil
	}
	n, err := media.ParseSize(s)
	if err != nil {
		return err
	}
	if f.off && n == 0 {
		n = -1
	}
	*f.p = n
	return nil
}

// quotaFlag is an upload quota written like 200MiB/24h, or off.
type quotaFlag struct{ q *media.Quota }

func (f quotaFlag) String() string {
	if f.q == nil {
		return ""
	}
	return f.q.String()
}

func (f quotaFlag) Set(s string) error {
	q, err := media.ParseQuota(s)
	if err != nil {
		return err
	}
	*f.q = q
	return nil
}
