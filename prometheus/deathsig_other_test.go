//go:build !linux

package rediscacheprom

import "os/exec"

// setDeathSignal does nothing outside Linux.
func setDeathSignal(*exec.Cmd) {}
