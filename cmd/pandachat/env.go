package main

import "os"

// lookupEnv is os.LookupEnv; tests pass their own.
var lookupEnv = os.LookupEnv
