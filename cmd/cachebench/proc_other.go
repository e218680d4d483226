//go:build !linux

package main

import "os/exec"

// setDeathSignal does nothing outside Linux: the child is stopped at exit.
func setDeathSignal(*exec.Cmd) {}
