package rediscache_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rediscache/rediscache"
)

// keyGlobChars are the bytes Redis KEYS/SCAN MATCH patterns give a meaning.
const keyGlobChars = `*?[]\`

// keyAssertSafe checks that key holds no glob character and no ASCII
// whitespace or control byte.
func keyAssertSafe(t testing.TB, key string) {
	t.Helper()
	assert.False(t, strings.ContainsAny(key, keyGlobChars), "key %q holds a glob character", key)
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c == 0x7f {
			t.Errorf("key %q holds whitespace/control byte %#x at %d", key, c, i)
		}
	}
}

func TestVersionString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    rediscache.Version
		want string
	}{
		{rediscache.V1, "v1"},
		{rediscache.V2, "v2"},
		{rediscache.V3, "v3"},
		{rediscache.Version(10), "v10"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.v.String())
		})
	}
}

func TestNewKeyGeneratorVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   rediscache.Version
		want rediscache.Version
		task string
	}{
		{"zero is v1", 0, rediscache.V1, "tasks:v1:task_123"},
		{"negative is v1", -3, rediscache.V1, "tasks:v1:task_123"},
		{"v1", rediscache.V1, rediscache.V1, "tasks:v1:task_123"},
		{"v2", rediscache.V2, rediscache.V2, "tasks:v2:task_123"},
		{"v3", rediscache.V3, rediscache.V3, "tasks:v3:task_123"},
		{"v12", 12, 12, "tasks:v12:task_123"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := rediscache.NewKeyGenerator(tt.in)
			assert.Equal(t, tt.want, g.Version())
			assert.Equal(t, tt.task, g.TaskKey("task_123"))
			ns, v, parts, err := rediscache.ParseKey(g.TaskKey("task_123"))
			require.NoError(t, err)
			assert.Equal(t, rediscache.NamespaceTasks, ns)
			assert.Equal(t, tt.want, v)
			assert.Equal(t, []string{"task_123"}, parts)
		})
	}
	assert.Equal(t,
		rediscache.NewKeyGenerator(rediscache.V1).UserKey("u", "p"),
		rediscache.NewKeyGenerator(0).UserKey("u", "p"))
}

func TestKeyGeneratorMethods(t *testing.T) {
	t.Parallel()
	type keyCase struct {
		name   string
		method string // KeyGenerator method under test
		v      rediscache.Version
		got    func(g *rediscache.KeyGenerator) string
		want   string
	}
	V1, V2, V3 := rediscache.V1, rediscache.V2, rediscache.V3
	tests := []keyCase{
		{"Version", "Version", V2, func(g *rediscache.KeyGenerator) string { return g.Version().String() }, "v2"},

		{"Key", "Key", V1, func(g *rediscache.KeyGenerator) string { return g.Key("ns", "a", "b") }, "ns:v1:a:b"},
		{"Key no parts", "Key", V1, func(g *rediscache.KeyGenerator) string { return g.Key("ns") }, "ns:v1"},
		{"Key empty part", "Key", V1, func(g *rediscache.KeyGenerator) string { return g.Key("ns", "") }, "ns:v1:"},
		{"Key empty ns", "Key", V1, func(g *rediscache.KeyGenerator) string { return g.Key("", "a") }, ":v1:a"},
		{"Key escapes ns", "Key", V1, func(g *rediscache.KeyGenerator) string { return g.Key("a:b*", "c") }, "a%3Ab%2A:v1:c"},
		{"Key v3", "Key", V3, func(g *rediscache.KeyGenerator) string { return g.Key(rediscache.NamespaceUser, "x") }, "user:v3:x"},

		{"TaskKey", "TaskKey", V1, func(g *rediscache.KeyGenerator) string { return g.TaskKey("task_123") }, "tasks:v1:task_123"},
		{"TaskKey v2", "TaskKey", V2, func(g *rediscache.KeyGenerator) string { return g.TaskKey("task_123") }, "tasks:v2:task_123"},
		{"TaskKey v3", "TaskKey", V3, func(g *rediscache.KeyGenerator) string { return g.TaskKey("task_123") }, "tasks:v3:task_123"},
		{"TaskKey hostile", "TaskKey", V1, func(g *rediscache.KeyGenerator) string { return g.TaskKey("t:1*") }, "tasks:v1:t%3A1%2A"},

		{"UserTasksKey", "UserTasksKey", V1, func(g *rediscache.KeyGenerator) string { return g.UserTasksKey("user_abc", "running", 20, 40) },
			"tasks:v1:user_tasks:user_abc:running:20:40"},
		{"UserTasksKey any status", "UserTasksKey", V1, func(g *rediscache.KeyGenerator) string { return g.UserTasksKey("user_abc", "", 10, 0) },
			"tasks:v1:user_tasks:user_abc::10:0"},

		{"PendingTasksKey", "PendingTasksKey", V1, func(g *rediscache.KeyGenerator) string { return g.PendingTasksKey(5, 100) },
			"tasks:v1:pending:5:100"},
		{"PendingTasksKey negative", "PendingTasksKey", V1, func(g *rediscache.KeyGenerator) string { return g.PendingTasksKey(-1, 0) },
			"tasks:v1:pending:-1:0"},

		{"ConversationKey", "ConversationKey", V1, func(g *rediscache.KeyGenerator) string { return g.ConversationKey("conv_1") },
			"conversations:v1:conv_1"},
		{"ConversationMessagesKey", "ConversationMessagesKey", V1, func(g *rediscache.KeyGenerator) string { return g.ConversationMessagesKey("conv_1", 50) },
			"conversations:v1:messages:conv_1:50"},
		{"UserConversationsKey active", "UserConversationsKey", V1, func(g *rediscache.KeyGenerator) string { return g.UserConversationsKey("user_abc", true, 10, 20) },
			"conversations:v1:user_conversations:user_abc:active:10:20"},
		{"UserConversationsKey all", "UserConversationsKey", V1, func(g *rediscache.KeyGenerator) string { return g.UserConversationsKey("user_abc", false, 10, 0) },
			"conversations:v1:user_conversations:user_abc:all:10:0"},

		{"SessionKey", "SessionKey", V1, func(g *rediscache.KeyGenerator) string { return g.SessionKey("user_abc", "session_xyz", false) },
			"sessions:v1:session:user_abc:session_xyz"},
		{"SessionKey active", "SessionKey", V1, func(g *rediscache.KeyGenerator) string { return g.SessionKey("user_abc", "session_xyz", true) },
			"sessions:v1:session:user_abc:session_xyz:active"},
		{"SessionKey hostile", "SessionKey", V1, func(g *rediscache.KeyGenerator) string { return g.SessionKey("abc:session:other", "*", false) },
			"sessions:v1:session:abc%3Asession%3Aother:%2A"},

		{"ScriptKey", "ScriptKey", V1, func(g *rediscache.KeyGenerator) string { return g.ScriptKey("script_9") },
			"scripts:v1:script_9"},
		{"TaskScriptsKey", "TaskScriptsKey", V1, func(g *rediscache.KeyGenerator) string { return g.TaskScriptsKey("task_123", "draft", 5, 10) },
			"scripts:v1:task_scripts:task_123:draft:5:10"},

		{"StoryboardKey", "StoryboardKey", V1, func(g *rediscache.KeyGenerator) string { return g.StoryboardKey("sb_1") },
			"storyboards:v1:sb_1"},
		{"TaskStoryboardsKey", "TaskStoryboardsKey", V1, func(g *rediscache.KeyGenerator) string { return g.TaskStoryboardsKey("task_123", "", 0, 0) },
			"storyboards:v1:task_storyboards:task_123::0:0"},

		{"ResourceKey", "ResourceKey", V1, func(g *rediscache.KeyGenerator) string { return g.ResourceKey("res_1") },
			"resources:v1:res_1"},
		{"TaskResourcesKey", "TaskResourcesKey", V1, func(g *rediscache.KeyGenerator) string { return g.TaskResourcesKey("task_123", "image", 25, 50) },
			"resources:v1:task_resources:task_123:image:25:50"},
		{"FirstFrameImagesKey", "FirstFrameImagesKey", V1, func(g *rediscache.KeyGenerator) string { return g.FirstFrameImagesKey("task_123") },
			"resources:v1:first_frame_images:task_123"},
		{"TaskVideosKey", "TaskVideosKey", V1, func(g *rediscache.KeyGenerator) string { return g.TaskVideosKey("task_123") },
			"resources:v1:task_videos:task_123"},

		{"APIResponseKey", "APIResponseKey", V1, func(g *rediscache.KeyGenerator) string {
			return g.APIResponseKey("/tasks", map[string]string{"page": "2", "limit": "10"})
		}, "api:v1:response:/tasks:limit=10&page=2"},
		{"APIResponseKey nil", "APIResponseKey", V1, func(g *rediscache.KeyGenerator) string { return g.APIResponseKey("/tasks", nil) },
			"api:v1:response:/tasks:"},
		{"APIResponseKey empty", "APIResponseKey", V1, func(g *rediscache.KeyGenerator) string { return g.APIResponseKey("/tasks", map[string]string{}) },
			"api:v1:response:/tasks:"},
		{"APIResponseKey escapes", "APIResponseKey", V1, func(g *rediscache.KeyGenerator) string {
			return g.APIResponseKey("/a b", map[string]string{"q": "x y", "p": "100%", "a&b": "c=d"})
		}, "api:v1:response:/a%20b:a%2526b=c%253Dd&p=100%2525&q=x%20y"},
		{"APIResponseKey v2", "APIResponseKey", V2, func(g *rediscache.KeyGenerator) string {
			return g.APIResponseKey("/tasks", map[string]string{"k": "v"})
		}, "api:v2:response:/tasks:k=v"},

		{"UserKey", "UserKey", V1, func(g *rediscache.KeyGenerator) string { return g.UserKey("user_abc123", "user_profile") },
			"user:v1:user_profile:user_abc123"},
		{"UserKey hostile", "UserKey", V1, func(g *rediscache.KeyGenerator) string { return g.UserKey("user_*", "p[1]") },
			"user:v1:p%5B1%5D:user_%2A"},

		{"AgentStateKey", "AgentStateKey", V1, func(g *rediscache.KeyGenerator) string { return g.AgentStateKey("style_agent", "task_123") },
			"agent:v1:agent_state:style_agent:task_123"},
		{"AgentStateKey v2", "AgentStateKey", V2, func(g *rediscache.KeyGenerator) string { return g.AgentStateKey("style_agent", "task_123") },
			"agent:v2:agent_state:style_agent:task_123"},

		{"Prefix", "Prefix", V1, func(g *rediscache.KeyGenerator) string {
			return g.Prefix(rediscache.NamespaceTasks, "user_tasks", "user_1")
		},
			"tasks:v1:user_tasks:user_1:"},
		{"Prefix namespace", "Prefix", V2, func(g *rediscache.KeyGenerator) string { return g.Prefix(rediscache.NamespaceUser) }, "user:v2:"},
		{"Prefix hostile", "Prefix", V1, func(g *rediscache.KeyGenerator) string { return g.Prefix("ns", "a:b", "*") }, "ns:v1:a%3Ab:%2A:"},
	}

	// Every exported KeyGenerator method must have a case here.
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.method] = true
	}
	typ := reflect.TypeFor[*rediscache.KeyGenerator]()
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		assert.True(t, covered[name], "KeyGenerator.%s has no case in TestKeyGeneratorMethods", name)
		delete(covered, name)
	}
	assert.Empty(t, covered, "cases name methods KeyGenerator does not have")

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := rediscache.NewKeyGenerator(tt.v)
			got := tt.got(g)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, got, tt.got(g), "not deterministic")
			if tt.method != "Version" {
				keyAssertSafe(t, got)
				_, v, _, err := rediscache.ParseKey(got)
				require.NoError(t, err)
				assert.Equal(t, tt.v, v)
			}
		})
	}

	t.Run("APIResponseKey prefix", func(t *testing.T) {
		t.Parallel()
		g := rediscache.NewKeyGenerator(rediscache.V1)
		for _, p := range []map[string]string{nil, {"a": "b"}, {"page": "1", "q": strings.Repeat("z", 300)}} {
			assert.True(t, strings.HasPrefix(g.APIResponseKey("/tasks", p), "api:v1:response:/tasks:"))
		}
	})
}

func TestKeyGeneratorPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		v     rediscache.Version
		ns    rediscache.Namespace
		parts []string
		want  string
		under [][]string // part lists whose keys are under the prefix
		not   [][]string // part lists whose keys are not
	}{
		{"user's task pages", rediscache.V1, rediscache.NamespaceTasks, []string{"user_tasks", "user_1"}, "tasks:v1:user_tasks:user_1:",
			[][]string{{"user_tasks", "user_1", "x"}, {"user_tasks", "user_1", "pending", "20", "0"}, {"user_tasks", "user_1", ""}},
			[][]string{{"user_tasks", "user_10"}, {"user_tasks", "user_10", "x"}, {"user_tasks", "user_1"}, {"user_tasks", "user_1:x"},
				{"user_tasks", "user_1*"}, {"user_tasks", "user_"}, {"user_1", "x"}, {"user_tasks"}}},
		{"namespace", rediscache.V1, rediscache.NamespaceTasks, nil, "tasks:v1:",
			[][]string{{"task_123"}, {""}, {"user_tasks", "u"}},
			[][]string{nil}},
		{"version", rediscache.V2, rediscache.NamespaceUser, []string{"user_profile"}, "user:v2:user_profile:",
			[][]string{{"user_profile", "user_abc"}},
			[][]string{{"user_profile"}, {"user_profile2", "x"}}},
		{"escaped like Key", rediscache.V1, "a:b*", []string{"x:y", "100%", "[z]", "{t}", "a b"}, "a%3Ab%2A:v1:x%3Ay:100%25:%5Bz%5D:%7Bt%7D:a%20b:",
			[][]string{{"x:y", "100%", "[z]", "{t}", "a b", "c"}},
			[][]string{{"x", "y", "100%", "[z]", "{t}", "a b", "c"}, {"x:y", "100%", "[z]", "{t}", "a b"}}},
		{"empty part", rediscache.V1, "ns", []string{""}, "ns:v1::",
			[][]string{{"", "x"}, {"", ""}},
			[][]string{{""}, {"x"}, {"x", ""}}},
		{"empty namespace", rediscache.V1, "", []string{"a"}, ":v1:a:",
			[][]string{{"a", "b"}},
			[][]string{{"ab"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := rediscache.NewKeyGenerator(tt.v)
			got := g.Prefix(tt.ns, tt.parts...)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, g.Key(tt.ns, tt.parts...)+":", got, "Key plus the separator")
			keyAssertSafe(t, got)
			for _, parts := range tt.under {
				assert.True(t, strings.HasPrefix(g.Key(tt.ns, parts...), got), "%q is not under %q", g.Key(tt.ns, parts...), got)
			}
			for _, parts := range tt.not {
				assert.False(t, strings.HasPrefix(g.Key(tt.ns, parts...), got), "%q is under %q", g.Key(tt.ns, parts...), got)
			}
			other := rediscache.NewKeyGenerator(tt.v + 1)
			assert.False(t, strings.HasPrefix(other.Key(tt.ns, append(slices.Clone(tt.parts), "x")...), got), "another version's key")
		})
	}
	g := rediscache.NewKeyGenerator(rediscache.V1)
	p := g.Prefix(rediscache.NamespaceTasks, "user_tasks", "user_1")
	assert.True(t, strings.HasPrefix(g.Key(rediscache.NamespaceTasks, "user_tasks", "user_1", "x"), p))
	assert.True(t, strings.HasPrefix(g.UserTasksKey("user_1", "pending", 20, 0), p))
	assert.False(t, strings.HasPrefix(g.Key(rediscache.NamespaceTasks, "user_tasks", "user_10"), p))
	assert.False(t, strings.HasPrefix(g.UserTasksKey("user_10", "pending", 20, 0), p))
}

// InvalidatePrefix with a KeyGenerator.Prefix deletes the keys of user_1
// and no key of user_10 (nor of ids that start like user_1), on a real
// server and a cluster, also after the namespace moved to a new
// generation.
func TestInvalidatePrefixWithKeyGeneratorPrefix(t *testing.T) {
	t.Parallel()
	eachTopology(t, func(t *testing.T, e topo) {
		ctx := t.Context()
		c := e.client(t, rediscache.Options{Prefix: "app"})
		g := rediscache.NewKeyGenerator(rediscache.V1)
		var own, others []string
		for _, status := range []string{"", "pending", "done"} {
			for offset := range 20 {
				own = append(own, g.UserTasksKey("user_1", status, 20, offset*20))
				for _, user := range []string{"user_10", "user_1:x", "user_1*", "user_", "user_2"} {
					others = append(others, g.UserTasksKey(user, status, 20, offset*20))
				}
			}
		}
		others = append(others,
			g.Key(rediscache.NamespaceTasks, "user_tasks", "user_1"), // exactly the parts: not under the prefix
			g.TaskKey("user_1"),
			rediscache.NewKeyGenerator(rediscache.V2).UserTasksKey("user_1", "", 20, 0),
			g.Key(rediscache.NamespaceConversations, "user_tasks", "user_1", "x"),
		)
		prefix := g.Prefix(rediscache.NamespaceTasks, "user_tasks", "user_1")
		check := func(t *testing.T) {
			t.Helper()
			for _, k := range append(slices.Clone(own), others...) {
				require.NoError(t, c.Set(ctx, k, k, time.Hour))
			}
			n, err := c.InvalidatePrefix(ctx, prefix)
			require.NoError(t, err)
			assert.Equal(t, int64(len(own)), n, "deleted")
			for _, k := range own {
				_, err := rediscache.Get[string](ctx, c, k)
				assert.ErrorIs(t, err, rediscache.ErrCacheMiss, k)
			}
			for _, k := range others {
				v, err := rediscache.Get[string](ctx, c, k)
				if assert.NoError(t, err, k) {
					assert.Equal(t, k, v)
				}
			}
		}
		check(t)
		_, err := c.InvalidateNamespace(ctx, rediscache.NamespaceTasks)
		require.NoError(t, err)
		check(t)
	})
}

func TestEscapeComponent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain", "task_123", "task_123"},
		{"punctuation kept", "a-b_c.d/e@f=g+h,i~j!k#l$m^n&o(p)q'r\"s;t<u>v|w`x", "a-b_c.d/e@f=g+h,i~j!k#l$m^n&o(p)q'r\"s;t<u>v|w`x"},
		{"dotdot slash", "../", "../"},
		{"japanese", "日本", "日本"},
		{"accent", "é", "é"},
		{"mixed unicode", "user_日本é", "user_日本é"},
		{"replacement char is valid utf8", "\uFFFD", "\uFFFD"},
		{"colon", ":", "%3A"},
		{"percent", "%", "%25"},
		{"star", "*", "%2A"},
		{"question", "?", "%3F"},
		{"open bracket", "[", "%5B"},
		{"close bracket", "]", "%5D"},
		{"backslash", `\`, "%5C"},
		{"open brace", "{", "%7B"},
		{"close brace", "}", "%7D"},
		{"space", " ", "%20"},
		{"tab", "\t", "%09"},
		{"newline", "\n", "%0A"},
		{"carriage return", "\r", "%0D"},
		{"NUL", "\x00", "%00"},
		{"unit separator", "\x1f", "%1F"},
		{"DEL", "\x7f", "%7F"},
		{"NBSP", "\u00a0", "%C2%A0"},
		{"NEL", "\u0085", "%C2%85"},
		{"line separator", "\u2028", "%E2%80%A8"},
		{"ideographic space", "\u3000", "%E3%80%80"},
		{"invalid byte", "\xff", "%FF"},
		{"truncated rune", "\xe6\x97", "%E6%97"},
		{"invalid inside valid", "日\xff本", "日%FF本"},
		{"hostile session", "abc:session:other", "abc%3Asession%3Aother"},
		{"user glob", "user_*", "user_%2A"},
		{"hash tag", "{slot}", "%7Bslot%7D"},
		{"already escaped looking", "%3A", "%253A"},
		{"mixed", "a b:c*d", "a%20b%3Ac%2Ad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := rediscache.EscapeComponent(tt.in)
			assert.Equal(t, tt.want, got)
			assert.NotContains(t, got, ":")
			keyAssertSafe(t, got)
			back, err := rediscache.UnescapeComponent(got)
			require.NoError(t, err)
			assert.Equal(t, tt.in, back)
		})
	}
}

func TestUnescapeComponentErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"%", "%4", "a%", "a%4", "%zz", "%G0", "%0G", "%%41", "ab%-1", "%\x00\x00"} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			_, err := rediscache.UnescapeComponent(in)
			require.Error(t, err)
			assert.ErrorIs(t, err, rediscache.ErrInvalidKey)
		})
	}
}

func TestKeyEscapingIsolatesTenants(t *testing.T) {
	t.Parallel()
	g := rediscache.NewKeyGenerator(rediscache.V1)
	tests := []struct {
		name string
		a, b string
	}{
		{"UserKey colon moves", g.UserKey("a:b", "x"), g.UserKey("a", "b:x")},
		{"UserKey colon other side", g.UserKey("b", "x:a"), g.UserKey("a", "x:b")},
		{"UserKey glob", g.UserKey("user_*", "p"), g.UserKey("user_1", "p")},
		{"SessionKey injected session", g.SessionKey("abc:session:other", "s", false), g.SessionKey("abc", "session:other:s", false)},
		{"SessionKey active suffix", g.SessionKey("u", "s:active", false), g.SessionKey("u", "s", true)},
		{"SessionKey split", g.SessionKey("u:s", "x", false), g.SessionKey("u", "s:x", false)},
		{"AgentStateKey split", g.AgentStateKey("a:b", "c"), g.AgentStateKey("a", "b:c")},
		{"TaskKey path", g.TaskKey("../"), g.TaskKey("..")},
		{"TaskKey escape lookalike", g.TaskKey("%2A"), g.TaskKey("*")},
		{"TaskKey colon lookalike", g.TaskKey("a%3Ab"), g.TaskKey("a:b")},
		{"UserTasksKey status shift", g.UserTasksKey("u:running", "", 1, 2), g.UserTasksKey("u", "running:", 1, 2)},
		{"TaskScriptsKey filter shift", g.TaskScriptsKey("t", "d:5", 0, 0), g.TaskScriptsKey("t:d", "5", 0, 0)},
		{"ResourceKey vs TaskVideosKey", g.ResourceKey("task_videos:t"), g.TaskVideosKey("t")},
		{"TaskKey vs PendingTasksKey", g.TaskKey("pending:1:2"), g.PendingTasksKey(1, 2)},
		{"ConversationKey vs messages", g.ConversationKey("messages:c:5"), g.ConversationMessagesKey("c", 5)},
		{"Key vs other namespace", g.Key("user:v1:p", "u"), g.UserKey("u", "p")},
		{"Key ns colon", g.Key("a:b"), g.Key("a", "b")},
		{"Key empty parts", g.Key("a", ""), g.Key("a")},
		{"Key two empty parts", g.Key("a", "", ""), g.Key("a", "")},
		{"APIResponseKey endpoint shift", g.APIResponseKey("/x:a=b", nil), g.APIResponseKey("/x", map[string]string{"a": "b"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.NotEqual(t, tt.a, tt.b)
			keyAssertSafe(t, tt.a)
			keyAssertSafe(t, tt.b)
		})
	}

	t.Run("all distinct", func(t *testing.T) {
		t.Parallel()
		ids := []string{"", "a", "b", "a:b", "b:a", "*", "user_*", "../", "..", "%", "%25", "%2A", "a b", "a\tb",
			"[a]", `\`, "?", "{x}", "日本", "é", "\xff", "\u2028", "\u00a0", "abc:session:other", "session", "active", "x:active"}
		// Every (method, args) tuple must give its own key.
		seen := map[string]string{}
		add := func(key, desc string) {
			t.Helper()
			keyAssertSafe(t, key)
			if prev, ok := seen[key]; ok {
				t.Errorf("key %q built by both %s and %s", key, prev, desc)
			}
			seen[key] = desc
		}
		for _, a := range ids {
			add(g.TaskKey(a), "TaskKey("+a+")")
			add(g.ConversationKey(a), "ConversationKey("+a+")")
			add(g.ScriptKey(a), "ScriptKey("+a+")")
			add(g.StoryboardKey(a), "StoryboardKey("+a+")")
			add(g.ResourceKey(a), "ResourceKey("+a+")")
			add(g.FirstFrameImagesKey(a), "FirstFrameImagesKey("+a+")")
			add(g.TaskVideosKey(a), "TaskVideosKey("+a+")")
			for _, b := range ids {
				add(g.UserKey(a, b), "UserKey("+a+","+b+")")
				add(g.AgentStateKey(a, b), "AgentStateKey("+a+","+b+")")
				add(g.SessionKey(a, b, false), "SessionKey("+a+","+b+",false)")
				add(g.SessionKey(a, b, true), "SessionKey("+a+","+b+",true)")
				add(g.UserTasksKey(a, b, 1, 2), "UserTasksKey("+a+","+b+")")
			}
		}
	})
}

func TestAPIResponseKeyParams(t *testing.T) {
	t.Parallel()
	g := rediscache.NewKeyGenerator(rediscache.V1)

	t.Run("map order does not matter", func(t *testing.T) {
		t.Parallel()
		names := []string{"page", "limit", "sort", "q", "a", "b", "z", "x=y", "k&v", "%", "", "日本"}
		want := ""
		for i := range 300 {
			order := slices.Clone(names)
			rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			m := make(map[string]string, len(order))
			for _, k := range order {
				m[k] = "v_" + k
			}
			got := g.APIResponseKey("/tasks", m)
			if i == 0 {
				want = got
				continue
			}
			require.Equal(t, want, got, "insertion order %q", order)
		}
		// Long enough to be hashed: the hash must be stable too.
		long := map[string]string{}
		for _, k := range names {
			long[k] = strings.Repeat(k, 20)
		}
		wantLong := g.APIResponseKey("/tasks", long)
		for range 100 {
			order := slices.Clone(names)
			rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			m := map[string]string{}
			for _, k := range order {
				m[k] = strings.Repeat(k, 20)
			}
			require.Equal(t, wantLong, g.APIResponseKey("/tasks", m))
		}
	})

	t.Run("different maps differ", func(t *testing.T) {
		t.Parallel()
		maps := []map[string]string{
			nil,
			{"": ""},
			{"a": ""},
			{"": "a"},
			{"a": "b"},
			{"a": "b&c=d"},
			{"a": "b", "c": "d"},
			{"a=b": "c"},
			{"a": "b=c"},
			{"a&b": "c"},
			{"a": "b&c"},
			{"a": "%26"},
			{"a": "&"},
			{"a": "%3D"},
			{"a": "="},
			{"a": "%"},
			{"a": "%25"},
			{"a": "b", "c": ""},
			{"a": "b&c="},
			{"a": "b:c"},
			{"a:b": "c"},
			{"a": "b c"},
			{"a": "b*"},
			{"page": "1"},
			{"page": "01"},
			{"a": strings.Repeat("x", 200)},
			{"a": strings.Repeat("x", 201)},
			{"b": strings.Repeat("x", 200)},
		}
		seen := map[string]int{}
		for i, m := range maps {
			key := g.APIResponseKey("/tasks", m)
			keyAssertSafe(t, key)
			if j, ok := seen[key]; ok {
				t.Errorf("maps %v and %v both give %q", maps[j], m, key)
			}
			seen[key] = i
		}
		assert.NotEqual(t,
			g.APIResponseKey("/tasks", map[string]string{"a": "b&c=d"}),
			g.APIResponseKey("/tasks", map[string]string{"a": "b", "c": "d"}))
		assert.NotEqual(t,
			g.APIResponseKey("/tasks", map[string]string{"a=b": "c"}),
			g.APIResponseKey("/tasks", map[string]string{"a": "b=c"}))
		assert.NotEqual(t,
			g.APIResponseKey("/tasks", map[string]string{"a": "1"}),
			g.APIResponseKey("/other", map[string]string{"a": "1"}))
	})

	t.Run("empty and nil", func(t *testing.T) {
		t.Parallel()
		assert.Equal(t, "api:v1:response:/tasks:", g.APIResponseKey("/tasks", nil))
		assert.Equal(t, "api:v1:response:/tasks:", g.APIResponseKey("/tasks", map[string]string{}))
		assert.Equal(t, "api:v1:response::", g.APIResponseKey("", nil))
		assert.NotEqual(t, g.APIResponseKey("/tasks", nil), g.APIResponseKey("/tasks", map[string]string{"": ""}))
	})

	t.Run("long params are hashed", func(t *testing.T) {
		t.Parallel()
		const prefix = "api:v1:response:/tasks:"
		sha := func(s string) string {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		}
		tests := []struct {
			name   string
			params map[string]string
			want   string
		}{
			// "q=" + 126 bytes is exactly 128 bytes: kept.
			{"128 bytes readable", map[string]string{"q": strings.Repeat("x", 126)}, prefix + "q=" + strings.Repeat("x", 126)},
			{"129 bytes hashed", map[string]string{"q": strings.Repeat("x", 127)}, prefix + sha("q="+strings.Repeat("x", 127))},
			{"short readable", map[string]string{"page": "1", "limit": "10"}, prefix + "limit=10&page=1"},
			{"many params hashed", map[string]string{"a": strings.Repeat("1", 70), "b": strings.Repeat("2", 70)},
				prefix + sha("a="+strings.Repeat("1", 70)+"&b="+strings.Repeat("2", 70))},
			{"escapes count toward length", map[string]string{"q": strings.Repeat("&", 43)}, prefix + sha("q="+strings.Repeat("%26", 43))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				got := g.APIResponseKey("/tasks", tt.params)
				assert.Equal(t, tt.want, got)
				keyAssertSafe(t, got)
				last := got[strings.LastIndexByte(got, ':')+1:]
				if len(last) == 64 && !strings.Contains(last, "=") {
					_, err := hex.DecodeString(last)
					assert.NoError(t, err, "hashed part must be hex")
				}
			})
		}
	})

	t.Run("hashed never equals unhashed", func(t *testing.T) {
		t.Parallel()
		long := map[string]string{"q": strings.Repeat("y", 500)}
		hashed := g.APIResponseKey("/tasks", long)
		h := hashed[strings.LastIndexByte(hashed, ':')+1:]
		require.Len(t, h, 64)
		_, err := hex.DecodeString(h)
		require.NoError(t, err)
		assert.NotContains(t, h, "=")
		// Try to reproduce the hash text with an unhashed rendering.
		for _, m := range []map[string]string{
			{h: ""}, {"": h}, {h[:32]: h[33:]}, {h[:10]: h[10:]},
		} {
			assert.NotEqual(t, hashed, g.APIResponseKey("/tasks", m))
		}
		assert.NotEqual(t, hashed, g.APIResponseKey("/tasks:"+h, nil))
		assert.NotEqual(t, hashed, g.Key(rediscache.NamespaceAPI, "response", "/tasks", h[:63]))
	})
}

func TestParseKeyRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		v     rediscache.Version
		ns    rediscache.Namespace
		parts []string
	}{
		{"zero parts", rediscache.V1, rediscache.NamespaceTasks, nil},
		{"one part", rediscache.V1, rediscache.NamespaceTasks, []string{"task_123"}},
		{"one empty part", rediscache.V1, rediscache.NamespaceTasks, []string{""}},
		{"many empty parts", rediscache.V2, rediscache.NamespaceTasks, []string{"", "", ""}},
		{"empty in middle", rediscache.V1, rediscache.NamespaceTasks, []string{"user_tasks", "u", "", "10", "0"}},
		{"empty namespace", rediscache.V1, "", []string{"x"}},
		{"empty namespace no parts", rediscache.V3, "", nil},
		{"hostile namespace", rediscache.V1, "a:v1:b", []string{"c"}},
		{"version-looking part", rediscache.V1, "ns", []string{"v2", "v0"}},
		{"hostile parts", rediscache.V1, rediscache.NamespaceSessions, []string{"abc:session:other", "*", "../", "user_*", "%", "%25", "%zz"}},
		{"controls", rediscache.V1, "ns", []string{"\x00", "\t\n\r ", "\x7f", "\x1f"}},
		{"unicode", rediscache.V1, "名前", []string{"日本", "é", "\u00a0", "\u2028", "\uFFFD"}},
		{"invalid utf8", rediscache.V1, "\xff", []string{"\xfe", "a\xc3", "\xed\xa0\x80"}},
		{"big version", rediscache.Version(123), "ns", []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := rediscache.NewKeyGenerator(tt.v)
			key := g.Key(tt.ns, tt.parts...)
			keyAssertSafe(t, key)
			ns, v, parts, err := rediscache.ParseKey(key)
			require.NoError(t, err, "key %q", key)
			assert.Equal(t, tt.ns, ns)
			assert.Equal(t, tt.v, v)
			if len(tt.parts) == 0 {
				assert.Empty(t, parts)
			} else {
				assert.Equal(t, tt.parts, parts)
			}
			// Rebuilding from the parsed pieces gives the same key.
			assert.Equal(t, key, rediscache.NewKeyGenerator(v).Key(ns, parts...))
		})
	}
}

func TestParseKeyMalformed(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"",
		"tasks",
		":",
		"tasks:",
		"tasks:x1:a",
		"tasks:v:a",
		"tasks:V1:a",
		"tasks:v0:a",
		"tasks:v01:a",
		"tasks:v-1:a",
		"tasks:v+1:a",
		"tasks:v1.0:a",
		"tasks:v 1:a",
		"tasks:v99999999999999999999999:a",
		"tasks:v1:%zz",
		"tasks:v1:%4",
		"tasks:v1:a%",
		"tasks:v1:ok:%G1",
		"%zz:v1:a",
		"%4:v1",
	} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			ns, v, parts, err := rediscache.ParseKey(key)
			require.Error(t, err)
			assert.True(t, errors.Is(err, rediscache.ErrInvalidKey), "err %v does not wrap ErrInvalidKey", err)
			assert.Empty(t, ns)
			assert.Zero(t, v)
			assert.Nil(t, parts)
		})
	}
}

// keyFuzzList decodes a fuzz string into a namespace and its parts: the
// string is split on 0x1F, the first piece is the namespace and the rest
// are the parts, so "ns" has no parts and "ns\x1f" has one empty part.
func keyFuzzList(s string) (rediscache.Namespace, []string) {
	pieces := strings.Split(s, "\x1f")
	return rediscache.Namespace(pieces[0]), pieces[1:]
}

func keyFuzzSeeds(f *testing.F) {
	seeds := [][2]string{
		{"tasks\x1ftask_123", "tasks\x1ftask_123"},
		{"user\x1fuser_profile\x1fa:b", "user\x1fuser_profile:a\x1fb"},
		{"user\x1fx\x1fa:b", "user\x1fb:x\x1fa"},
		{"sessions\x1fsession\x1fabc:session:other\x1fs", "sessions\x1fsession\x1fabc\x1fsession\x1fother\x1fs"},
		{"tasks\x1f*", "tasks\x1f%2A"},
		{"tasks\x1f../", "tasks\x1f.."},
		{"tasks\x1fuser_*", "tasks\x1fuser_1"},
		{"tasks", "tasks\x1f"},
		{"tasks\x1f", "tasks\x1f\x1f"},
		{"", ""},
		{"a:b", "a\x1fb"},
		{"tasks:v1", "tasks\x1fv1"},
		{"ns\x1f%", "ns\x1f%25"},
		{"ns\x1f%zz", "ns\x1f%4"},
		{"ns\x1f[a-z]?\\", "ns\x1f{tag}"},
		{"ns\x1f \t\n\r\x00\x7f", "ns\x1f"},
		{"ns\x1f\u00a0\u2028\u0085", "ns\x1f日本\x1fé"},
		{"ns\x1f\xff\xfe", "ns\x1f\xed\xa0\x80\x1f\xe6\x97"},
	}
	for i, s := range seeds {
		f.Add(uint8(i%4), s[0], s[1])
	}
}

func FuzzKeyGenerator(f *testing.F) {
	keyFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, ver uint8, a, b string) {
		g := rediscache.NewKeyGenerator(rediscache.Version(ver % 8))
		nsA, partsA := keyFuzzList(a)
		nsB, partsB := keyFuzzList(b)
		keyA := g.Key(nsA, partsA...)
		keyB := g.Key(nsB, partsB...)

		for _, c := range []struct {
			key   string
			ns    rediscache.Namespace
			parts []string
		}{{keyA, nsA, partsA}, {keyB, nsB, partsB}} {
			// (a) round trip
			ns, v, parts, err := rediscache.ParseKey(c.key)
			if err != nil {
				t.Fatalf("ParseKey(%q): %v", c.key, err)
			}
			if ns != c.ns || v != g.Version() || !slices.Equal(parts, c.parts) {
				t.Fatalf("ParseKey(%q) = %q, %v, %q; want %q, %v, %q", c.key, ns, v, parts, c.ns, g.Version(), c.parts)
			}
			// (c) no glob characters, whitespace or control bytes
			if i := strings.IndexAny(c.key, keyGlobChars); i >= 0 {
				t.Fatalf("key %q holds glob char %q", c.key, c.key[i])
			}
			for i := 0; i < len(c.key); i++ {
				if ch := c.key[i]; ch <= ' ' || ch == 0x7f {
					t.Fatalf("key %q holds whitespace/control byte %#x", c.key, ch)
				}
			}
		}

		// (b) different lists give different keys, equal lists equal keys.
		sameList := nsA == nsB && slices.Equal(partsA, partsB)
		if sameList != (keyA == keyB) {
			t.Fatalf("(%q, %q) and (%q, %q) give keys %q and %q", nsA, partsA, nsB, partsB, keyA, keyB)
		}

		// (d) a key is under the Prefix of a list exactly when that list is
		// its namespace and a proper leading part of its parts.
		for _, c := range []struct {
			key          string
			ns, pns      rediscache.Namespace
			parts, pfxOf []string
		}{{keyA, nsA, nsB, partsA, partsB}, {keyB, nsB, nsA, partsB, partsA}} {
			p := g.Prefix(c.pns, c.pfxOf...)
			want := c.ns == c.pns && len(c.parts) > len(c.pfxOf) && slices.Equal(c.parts[:len(c.pfxOf)], c.pfxOf)
			if got := strings.HasPrefix(c.key, p); got != want {
				t.Fatalf("key %q of (%q, %q) under Prefix(%q, %q) = %q: %v, want %v", c.key, c.ns, c.parts, c.pns, c.pfxOf, p, got, want)
			}
		}
	})
}

func FuzzEscapeComponent(f *testing.F) {
	for _, s := range []string{
		"", "task_123", "abc:session:other", "*", "../", "user_*", "%", "%25", "%2A", "%zz", "%4",
		"[a]?", `\`, "{x}", " \t\n\r\x00\x1f\x7f", "\u00a0\u2028\u2029\u0085\u3000", "日本", "é",
		"\xff", "\xe6\x97", "\xed\xa0\x80", "\uFFFD", "a=b&c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := rediscache.EscapeComponent(s)
		back, err := rediscache.UnescapeComponent(e)
		if err != nil {
			t.Fatalf("UnescapeComponent(EscapeComponent(%q) = %q): %v", s, e, err)
		}
		if back != s {
			t.Fatalf("UnescapeComponent(EscapeComponent(%q) = %q) = %q", s, e, back)
		}
		if i := strings.IndexAny(e, ":"+keyGlobChars); i >= 0 {
			t.Fatalf("EscapeComponent(%q) = %q holds %q", s, e, e[i])
		}
		for i := 0; i < len(e); i++ {
			if c := e[i]; c <= ' ' || c == 0x7f {
				t.Fatalf("EscapeComponent(%q) = %q holds control byte %#x", s, e, c)
			}
		}
		if e == s && strings.Contains(s, "%") {
			t.Fatalf("EscapeComponent(%q) left %% unescaped", s)
		}

		// Arbitrary input never panics and errors wrap ErrInvalidKey.
		if _, err := rediscache.UnescapeComponent(s); err != nil && !errors.Is(err, rediscache.ErrInvalidKey) {
			t.Fatalf("UnescapeComponent(%q): %v does not wrap ErrInvalidKey", s, err)
		}
		if _, v, _, err := rediscache.ParseKey(s); err != nil {
			if !errors.Is(err, rediscache.ErrInvalidKey) {
				t.Fatalf("ParseKey(%q): %v does not wrap ErrInvalidKey", s, err)
			}
		} else if v <= 0 {
			t.Fatalf("ParseKey(%q) accepted version %v", s, v)
		}
	})
}
