package rediscache

import (
	"math/rand/v2"
	"strings"
	"time"
)

// TTL presets.
const (
	TTLShort    = time.Minute
	TTLMedium   = 5 * time.Minute // the default TTL
	TTLLong     = 15 * time.Minute
	TTLVeryLong = time.Hour
	TTLDay      = 24 * time.Hour
	TTLWeek     = 7 * 24 * time.Hour
	TTLMonth    = 30 * 24 * time.Hour
)

// DefaultNamespaceTTLs returns a new map of suggested TTLs for the
// predefined namespaces, to pass as Options.NamespaceTTLs as it is or after
// changing entries:
//
//	api            TTLShort     responses go stale fast
//	tasks          TTLMedium    status changes often
//	agent          TTLMedium
//	conversations  TTLLong
//	user           TTLLong
//	scripts        TTLVeryLong  content changes rarely
//	storyboards    TTLVeryLong
//	resources      TTLVeryLong
//	sessions       TTLDay
func DefaultNamespaceTTLs() map[Namespace]time.Duration {
	return map[Namespace]time.Duration{
		NamespaceAPI:           TTLShort,
		NamespaceTasks:         TTLMedium,
		NamespaceAgent:         TTLMedium,
		NamespaceConversations: TTLLong,
		NamespaceUser:          TTLLong,
		NamespaceScripts:       TTLVeryLong,
		NamespaceStoryboards:   TTLVeryLong,
		NamespaceResources:     TTLVeryLong,
		NamespaceSessions:      TTLDay,
	}
}

// TTLFor returns the TTL a call with ttl 0 uses for keys of namespace ns:
// Options.NamespaceTTLs[ns] when set, else Options.DefaultTTL.
func (c *Client) TTLFor(ns Namespace) time.Duration {
	if ttl := c.opt.NamespaceTTLs[ns]; ttl > 0 {
		return ttl
	}
	return c.opt.DefaultTTL
}

// ttl resolves the TTL of one write: 0 becomes the key's namespace TTL,
// jitter is applied, and anything under a millisecond is rounded up to one
// (Redis's resolution), never replaced by a default. A negative ttl is an
// error.
func (c *Client) ttl(key string, ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl < 0:
		return 0, ErrInvalidTTL
	case ttl == 0:
		if len(c.opt.NamespaceTTLs) > 0 {
			// The key holds the namespace as KeyGenerator escaped it; the
			// map is keyed by the names themselves.
			ns, _, _ := strings.Cut(key, ":")
			if name, err := UnescapeComponent(ns); err == nil {
				ns = name
			}
			ttl = c.TTLFor(Namespace(ns))
		} else {
			ttl = c.opt.DefaultTTL
		}
	}
	if j := c.opt.TTLJitter; j > 0 {
		ttl = time.Duration(float64(ttl) * (1 + j*(2*rand.Float64()-1)))
	}
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	return ttl, nil
}
