package rediscache_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

func TestInvalidatePrefix(t *testing.T) {
	t.Parallel()
	eachTopology(t, func(t *testing.T, e topo) {
		t.Run("100k next to 100k", func(t *testing.T) { testInvalidateLarge(t, e) })
		t.Run("glob characters are literal", func(t *testing.T) { testInvalidateGlob(t, e) })
		t.Run("every byte", func(t *testing.T) { testInvalidateEveryByte(t, e) })
		t.Run("bad input deletes nothing", func(t *testing.T) { testInvalidateBadInput(t, e) })
		t.Run("ClearAll", func(t *testing.T) { testClearAll(t, e) })
		t.Run("CountPrefix", func(t *testing.T) { testCountPrefix(t, e) })
	})
}

// miniredis's SCAN MATCH honours escapes too.
func TestInvalidatePrefixMiniredis(t *testing.T) {
	t.Parallel()
	m := newMiniEnv(t)
	e := topo{name: "miniredis", addr: m.addr, raw: m.raw}
	t.Run("glob characters are literal", func(t *testing.T) { testInvalidateGlob(t, e) })
	t.Run("ClearAll", func(t *testing.T) { testClearAll(t, e) })
}

// 100,000 keys under the prefix "user_*" of Client "app" next to 100,000
// that must survive: keys that an unescaped pattern would match, other
// Clients' keys, unprefixed keys, keys with glob, ":" and "%" characters.
func testInvalidateLarge(t *testing.T, e topo) {
	const n = 100_000
	e.flush(t)
	ctx := t.Context()
	a := e.client(t, rediscache.Options{Prefix: "app"})
	b := e.client(t, rediscache.Options{Prefix: "app2"})
	g := rediscache.NewKeyGenerator(rediscache.V1)

	target := make([]string, 0, n)
	for i := range n {
		s := strconv.Itoa(i)
		var k string
		switch i % 5 {
		case 0:
			k = "user_*" + s
		case 1:
			k = "user_*:" + g.TaskKey("t*?[]%:"+s)
		case 2:
			k = "user_*?[a]:%" + s
		case 3:
			k = "user_**" + s
		default:
			k = `user_*\` + s
		}
		target = append(target, "app:"+k)
	}
	target[0] = "app:user_*" // the prefix itself is a key under it

	kinds := []func(s string) string{
		func(s string) string { return "app:user_" + s }, // what an unescaped "user_*" would match
		func(s string) string { return "app:user_?" + s },
		func(s string) string { return "app:user_[a]" + s },
		func(s string) string { return "app:user_x*" + s },
		func(s string) string { return `app:user\*` + s },
		func(s string) string { return "app:USER_*" + s },
		func(s string) string { return "app:" + g.UserKey("*"+s, "profile") },
		func(s string) string { return "app2:user_*" + s }, // another Client's keys
		func(s string) string { return "user_*" + s },      // unprefixed
		func(s string) string { return "appx:user_*" + s }, // a longer prefix
	}
	others := make([]string, 0, n)
	for i := range n {
		others = append(others, kinds[i%len(kinds)](strconv.Itoa(i)))
	}

	start := time.Now()
	e.seed(t, target, "v")
	e.seed(t, others, "v")
	t.Logf("%s: seeded %d keys in %v", e.name, 2*n, time.Since(start))
	require.Equal(t, int64(2*n), e.dbsize(t))

	cnt, err := a.CountPrefix(ctx, "user_*")
	require.NoError(t, err)
	assert.Equal(t, int64(n), cnt)
	cnt, err = a.CountPrefix(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, int64(n+7*n/10), cnt, "every key under app:")

	start = time.Now()
	d, err := a.InvalidatePrefix(ctx, "user_*")
	elapsed := time.Since(start)
	require.NoError(t, err)
	t.Logf("%s: InvalidatePrefix deleted %d keys in %v (%.0f keys/s)", e.name, d, elapsed, float64(d)/elapsed.Seconds())
	assert.Equal(t, int64(n), d)
	assert.Equal(t, uint64(n), a.Stats().Deletes)

	left := e.userKeys(t)
	require.Len(t, left, n, "exactly the prefix's keys are gone")
	missing := 0
	for _, k := range others {
		if !left[k] {
			missing++
			if missing <= 5 {
				t.Errorf("%q was deleted", k)
			}
		}
	}
	require.Zero(t, missing, "keys outside the prefix deleted")
	for _, k := range target[:100] {
		assert.False(t, left[k], k)
	}

	cnt, err = a.CountPrefix(ctx, "user_*")
	require.NoError(t, err)
	assert.Zero(t, cnt)
	cnt, err = b.CountPrefix(ctx, "user_*")
	require.NoError(t, err)
	assert.Equal(t, int64(n/10), cnt, "the other Client's keys")
	d, err = a.InvalidatePrefix(ctx, "user_*")
	require.NoError(t, err)
	assert.Zero(t, d)
}

func testInvalidateGlob(t *testing.T, e topo) {
	e.flush(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "g"})
	names := []string{
		"user_*a", "user_*", "user_1", "user_?", "user_?b", "user_xb", "user_[a]", "user_a",
		"user_[a]x", `user_\x`, `user_\*`, "user_", "user", "other", "u{1}*",
	}
	var seeded []string
	for _, k := range names {
		seeded = append(seeded, "g:"+k, "g2:"+k, k)
	}
	e.seed(t, seeded, "v")
	alive := map[string]bool{}
	for _, k := range seeded {
		alive[k] = true
	}
	steps := []struct {
		prefix string
		gone   []string
	}{
		{"user_*", []string{"user_*a", "user_*"}},
		{"user_?", []string{"user_?", "user_?b"}},
		{"user_[a]", []string{"user_[a]", "user_[a]x"}},
		{`user_\`, []string{`user_\x`, `user_\*`}},
		{"user_[", nil},
		{"u{1}", []string{"u{1}*"}},
		{"user_", []string{"user_1", "user_xb", "user_a", "user_"}},
		{"nothing", nil},
	}
	for _, st := range steps {
		d, err := c.InvalidatePrefix(ctx, st.prefix)
		require.NoError(t, err, st.prefix)
		assert.Equal(t, int64(len(st.gone)), d, st.prefix)
		for _, k := range st.gone {
			delete(alive, "g:"+k)
		}
		left := e.userKeys(t)
		assert.Equal(t, alive, left, "after InvalidatePrefix(%q)", st.prefix)
	}
}

// Every byte but NUL, and every pair of glob and hash-tag characters, is
// literal in a prefix: each InvalidatePrefix deletes exactly the keys that
// start with it.
func testInvalidateEveryByte(t *testing.T, e topo) {
	e.flush(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "eb"})
	const specials = `*?[]\^-!{}`
	var prefixes []string
	for _, x := range []byte(specials) {
		for _, y := range []byte(specials) {
			prefixes = append(prefixes, "k"+string([]byte{x, y}))
		}
	}
	for b := 1; b < 256; b++ {
		prefixes = append(prefixes, "k"+string([]byte{byte(b)}))
	}
	alive := map[string]bool{}
	var seeded []string
	for _, p := range prefixes {
		for _, k := range []string{p, p + "z"} {
			alive[k] = true
			seeded = append(seeded, "eb:"+k)
		}
	}
	e.seed(t, seeded, "v")
	for _, p := range prefixes {
		var want int64
		for k := range alive {
			if strings.HasPrefix(k, p) {
				want++
				delete(alive, k)
			}
		}
		d, err := c.InvalidatePrefix(ctx, p)
		require.NoError(t, err, "%q", p)
		require.Equal(t, want, d, "InvalidatePrefix(%q)", p)
	}
	assert.Empty(t, alive)
	assert.Zero(t, e.dbsize(t))
}

func testInvalidateBadInput(t *testing.T, e topo) {
	e.flush(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "p", MaxKeySize: 16})
	closed := e.client(t, rediscache.Options{Prefix: "p"})
	require.NoError(t, closed.Close())
	e.seed(t, []string{"p:a", "p:b", "q:a", "a"}, "v")
	var nilCtx context.Context // a nil context is exactly what is under test
	cases := []struct {
		name string
		call func() (int64, error)
		want error
	}{
		{"empty prefix", func() (int64, error) { return c.InvalidatePrefix(ctx, "") }, rediscache.ErrInvalidKey},
		{"long prefix", func() (int64, error) { return c.InvalidatePrefix(ctx, strings.Repeat("a", 20)) }, rediscache.ErrInvalidKey},
		{"nil ctx", func() (int64, error) { return c.InvalidatePrefix(nilCtx, "a") }, rediscache.ErrNilContext},
		{"closed", func() (int64, error) { return closed.InvalidatePrefix(ctx, "a") }, rediscache.ErrClosed},
		{"ClearAll nil ctx", func() (int64, error) { return c.ClearAll(nilCtx) }, rediscache.ErrNilContext},
		{"ClearAll closed", func() (int64, error) { return closed.ClearAll(ctx) }, rediscache.ErrClosed},
		{"CountPrefix closed", func() (int64, error) { return closed.CountPrefix(ctx, "") }, rediscache.ErrClosed},
		{"CountPrefix long prefix", func() (int64, error) { return c.CountPrefix(ctx, strings.Repeat("a", 20)) }, rediscache.ErrInvalidKey},
	}
	for _, tc := range cases {
		d, err := tc.call()
		require.ErrorIs(t, err, tc.want, tc.name)
		var op *rediscache.OpError
		require.ErrorAs(t, err, &op, tc.name)
		assert.Zero(t, d, tc.name)
		assert.Equal(t, int64(4), e.dbsize(t), tc.name)
	}
}

func testClearAll(t *testing.T, e topo) {
	e.flush(t)
	ctx := t.Context()
	own := []string{"app:a", "app:user_*", "app:x:y:z", "app:*", "app:"}
	foreign := []string{"app2:a", "appx:a", "app", "ap:a", "a", "user_*", "*", "app2:\x00generations"}
	bookkeeping := "app:\x00generations" // a NUL after the Prefix: no logical key looks like this
	e.seed(t, append(append(slices.Clone(own), foreign...), bookkeeping), "v")
	total := e.dbsize(t)

	noPrefix := e.client(t, rediscache.Options{})
	d, err := noPrefix.ClearAll(ctx)
	require.ErrorIs(t, err, rediscache.ErrNoPrefix)
	assert.Zero(t, d)
	assert.Equal(t, total, e.dbsize(t), "ClearAll without a Prefix deletes nothing")

	c := e.client(t, rediscache.Options{Prefix: "app"})
	d, err = c.ClearAll(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(len(own)), d)
	left := e.keys(t)
	for _, k := range []string{"app:\x00dels", "app:\x00{gens}", "\x00{gens}"} {
		delete(left, k) // the Clients' own bookkeeping
	}
	want := map[string]bool{bookkeeping: true}
	for _, k := range foreign {
		want[k] = true
	}
	assert.Equal(t, want, left)
	d, err = c.ClearAll(ctx)
	require.NoError(t, err)
	assert.Zero(t, d)
}

func testCountPrefix(t *testing.T, e topo) {
	e.flush(t)
	ctx := t.Context()
	c := e.client(t, rediscache.Options{Prefix: "cnt"})
	items := map[string]int{}
	for i := range 1500 {
		items["tasks:"+strconv.Itoa(i)] = i
	}
	for i := range 700 {
		items["user_*"+strconv.Itoa(i)] = i
		items["user_"+strconv.Itoa(i)] = i
	}
	require.NoError(t, rediscache.SetMany(ctx, c, items, time.Minute))
	e.seed(t, []string{"tasks:1", "cnt2:tasks:1", "cnt:\x00generations"}, "v")
	for prefix, want := range map[string]int64{
		"tasks:":  1500,
		"tasks:1": 1 + 10 + 100 + 500,
		"user_*":  700,
		"user_":   1400,
		"":        2900,
		"none":    0,
	} {
		n, err := c.CountPrefix(ctx, prefix)
		require.NoError(t, err, prefix)
		assert.Equal(t, want, n, "CountPrefix(%q)", prefix)
	}
	all := e.client(t, rediscache.Options{})
	n, err := all.CountPrefix(ctx, "")
	require.NoError(t, err)
	var every int64 // but its own bookkeeping keys ("\x00{gens}")
	for k := range e.keys(t) {
		if !strings.HasPrefix(k, "\x00") {
			every++
		}
	}
	assert.Equal(t, every, n, "without a Prefix: every key")
}

func ExampleClient_InvalidatePrefix() {
	srv, _ := miniredis.Run()
	defer srv.Close()
	c, _ := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr()}, Prefix: "myapp"})
	defer func() { _ = c.Close() }()
	ctx := context.Background()

	_ = rediscache.SetMany(ctx, c, map[string]int{"user_*1": 1, "user_*2": 2, "user_1": 3}, 0)
	n, _ := c.InvalidatePrefix(ctx, "user_*") // "*" is literal: "user_1" stays
	left, _ := c.CountPrefix(ctx, "user_")
	fmt.Println(n, left)
	// Output: 2 1
}
