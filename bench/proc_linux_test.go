package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel SIGKILL the server if the benchmark
// binary dies before it could stop it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
