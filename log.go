package rediscache

import (
	"context"
	"log/slog"
	"time"
)

// warnf logs a warning through Options.Logger, at most once per second per Client;
// the number of messages dropped since the last one is attached.
func (c *Client) warnf(msg string, args ...any) {
	if c.opt.Logger == nil {
		return
	}
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(time.Second) || !c.lastLog.CompareAndSwap(last, now) {
		c.droppedLogs.Add(1)
		return
	}
	if n := c.droppedLogs.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	c.opt.Logger.Log(context.Background(), slog.LevelWarn, msg, args...)
}
