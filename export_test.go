package rediscache

// FlightCallers returns how many calls have joined the Client's shared
// loads in progress, their leaders included: a test waits on it for a
// call to have joined a load, instead of sleeping.
func FlightCallers(c *Client) int {
	c.flight.mu.Lock()
	defer c.flight.mu.Unlock()
	n := 0
	for _, f := range c.flight.m {
		n += int(f.callers.Load())
	}
	return n
}
