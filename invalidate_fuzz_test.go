package rediscache

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rediscache/rediscache/internal/redistest"
)

// FuzzEscapeGlob checks, against a real redis-server's own glob matching,
// that the SCAN pattern built for a prefix matches a key exactly when the
// key starts with the prefix.
func FuzzEscapeGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"user_*", "user_*x"}, {"user_*", "user_abc"}, {"a?", "ab"}, {"a?", "a?"},
		{"[a]", "a"}, {"[a]", "[a]b"}, {`\`, `\x`}, {`a\*`, `a\*`}, {"]", "]"},
		{"[^a]", "b"}, {"[a-z]", "m"}, {"x", "y"}, {"\x00", "\x00a"}, {"é*", "é*ü"},
	} {
		f.Add(s[0], s[1])
	}
	srv := redistest.Start(f)
	rdb := srv.Client(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, prefix, key string) {
		if prefix == "" || key == "" {
			return
		}
		if err := rdb.Set(ctx, key, 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
		defer rdb.Del(ctx, key)
		got, err := rdb.Keys(ctx, escapeGlob(prefix)+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		matched := slices.Contains(got, key)
		if want := strings.HasPrefix(key, prefix); matched != want {
			t.Fatalf("pattern for prefix %q matched key %q: %v, want %v", prefix, key, matched, want)
		}
	})
}
