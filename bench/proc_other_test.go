//go:build !linux

package bench

import "os/exec"

// setDeathSignal is a no-op where Pdeathsig does not exist.
func setDeathSignal(*exec.Cmd) {}
