package chattest

// BuildFlags are the go build flags for a binary that a test builds and
// starts (the server): -race when the test itself runs with the race detector,
// so that `go test -race` checks the child processes too.
func BuildFlags() []string {
	if Race {
		return []string{"-race"}
	}
	return nil
}
