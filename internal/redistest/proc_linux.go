//go:build linux

package redistest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel SIGKILL the child if the thread that
// started it (and therefore the test binary) dies.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
