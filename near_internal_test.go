package rediscache

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestNearEntryExpiry(t *testing.T) {
	now := time.Now().UnixMilli()
	c := &Client{opt: Options{NegativeTTL: 30 * time.Second, StaleTTL: time.Minute}}
	for _, tc := range []struct {
		name     string
		e        envelope
		expires  int64
		negative bool
		live     bool
	}{
		{"plain Set: no known expiry", envelope{created: now - 1e6}, 0, false, true},
		{"negative, within NegativeTTL", envelope{flags: flagNegative, created: now - 1000}, now - 1000 + 30000, true, true},
		{"negative, past NegativeTTL", envelope{flags: flagNegative, created: now - 31000}, now - 31000 + 30000, true, false},
		{"fresh", envelope{created: now, freshUntil: now + 1000}, now + 1000 + 60000, false, true},
		{"stale, within StaleTTL", envelope{created: now - 2000, freshUntil: now - 1000}, now - 1000 + 60000, false, true},
		{"past StaleTTL", envelope{created: now - 70000, freshUntil: now - 61000}, now - 61000 + 60000, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ent := c.nearEntryOf(tc.e, "v")
			assert.Equal(t, tc.expires, ent.expires)
			assert.Equal(t, tc.negative, ent.negative)
			assert.Equal(t, tc.negative, ent.v == nil)
			assert.Equal(t, tc.live, ent.live())
		})
	}
}
