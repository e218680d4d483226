//go:build !linux

package redistest

import "os/exec"

// setDeathSignal is a no-op where Pdeathsig is not available.
func setDeathSignal(cmd *exec.Cmd) {}
