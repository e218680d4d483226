package rediscache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// KeyGenerator builds versioned, namespaced keys of the form
// "namespace:version:part1:part2...". Every component is escaped (see
// [EscapeComponent]), so any string may be a component: two different
// component lists never give the same key, an id can never reach into
// another namespace or id, and a key never holds a glob character. The
// zero value is not usable; call [NewKeyGenerator]. A KeyGenerator is
// immutable and safe for concurrent use.
type KeyGenerator struct {
	version Version
	vs      string // version.String()
}

// NewKeyGenerator returns a KeyGenerator for version v. A v of 0 or less
// means V1.
func NewKeyGenerator(v Version) *KeyGenerator {
	if v <= 0 {
		v = V1
	}
	return &KeyGenerator{version: v, vs: v.String()}
}

// Version returns the generator's version.
func (g *KeyGenerator) Version() Version { return g.version }

// Key returns "ns:version:part1:part2..." with every component escaped.
func (g *KeyGenerator) Key(ns Namespace, parts ...string) string {
	return g.build(ns, parts, false)
}

// Prefix returns the prefix of every key built from ns and parts followed
// by at least one more part: Key(ns, parts...) + ":", escaped exactly as
// [KeyGenerator.Key] escapes, version included. Because it ends with the
// separator and components are escaped, it never matches a key of another
// component that merely starts alike: the prefix of "user_1" is not a prefix
// of any key of "user_10", "user_1:x" or "user_1*". Pass it to
// [Client.InvalidatePrefix] or [Client.CountPrefix], minding their cost:
// both walk every key of the database, the Client's or not. The key of
// exactly those parts, Key(ns, parts...), is not under it: delete that one
// with [Client.Delete]. Prefix(ns) is "ns:version:", every key of the namespace
// at this version. For example, every cached page of one user's tasks:
//
//	g := NewKeyGenerator(V1)
//	p := g.Prefix(NamespaceTasks, "user_tasks", "user_1") // "tasks:v1:user_tasks:user_1:"
//	n, err := c.InvalidatePrefix(ctx, p)                  // UserTasksKey("user_1", ...), never "user_10"'s
func (g *KeyGenerator) Prefix(ns Namespace, parts ...string) string {
	return g.build(ns, parts, true)
}

// build returns "ns:version:part1:part2...", with a final ":" when
// prefix is true.
func (g *KeyGenerator) build(ns Namespace, parts []string, prefix bool) string {
	n := len(ns) + 1 + len(g.vs)
	if prefix {
		n++
	}
	for _, p := range parts {
		n += 1 + len(p)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(EscapeComponent(string(ns)))
	b.WriteByte(':')
	b.WriteString(g.vs)
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(EscapeComponent(p))
	}
	if prefix {
		b.WriteByte(':')
	}
	return b.String()
}

// TaskKey returns "tasks:v1:<taskID>".
func (g *KeyGenerator) TaskKey(taskID string) string {
	return g.Key(NamespaceTasks, taskID)
}

// UserTasksKey returns "tasks:v1:user_tasks:<userID>:<status>:<limit>:<offset>"
// for one page of a user's tasks ("" status means any status).
func (g *KeyGenerator) UserTasksKey(userID, status string, limit, offset int) string {
	return g.Key(NamespaceTasks, "user_tasks", userID, status, strconv.Itoa(limit), strconv.Itoa(offset))
}

// PendingTasksKey returns "tasks:v1:pending:<priority>:<limit>".
func (g *KeyGenerator) PendingTasksKey(priority, limit int) string {
	return g.Key(NamespaceTasks, "pending", strconv.Itoa(priority), strconv.Itoa(limit))
}

// ConversationKey returns "conversations:v1:<conversationID>".
func (g *KeyGenerator) ConversationKey(conversationID string) string {
	return g.Key(NamespaceConversations, conversationID)
}

// ConversationMessagesKey returns
// "conversations:v1:messages:<conversationID>:<messageLimit>".
func (g *KeyGenerator) ConversationMessagesKey(conversationID string, messageLimit int) string {
	return g.Key(NamespaceConversations, "messages", conversationID, strconv.Itoa(messageLimit))
}

// UserConversationsKey returns
// "conversations:v1:user_conversations:<userID>:<active|all>:<limit>:<offset>".
func (g *KeyGenerator) UserConversationsKey(userID string, activeOnly bool, limit, offset int) string {
	return g.Key(NamespaceConversations, "user_conversations", userID, activeOrAll(activeOnly), strconv.Itoa(limit), strconv.Itoa(offset))
}

// SessionKey returns "sessions:v1:session:<userID>:<sessionID>", with
// ":active" appended when activeOnly is true.
func (g *KeyGenerator) SessionKey(userID, sessionID string, activeOnly bool) string {
	if activeOnly {
		return g.Key(NamespaceSessions, "session", userID, sessionID, "active")
	}
	return g.Key(NamespaceSessions, "session", userID, sessionID)
}

// ScriptKey returns "scripts:v1:<scriptID>".
func (g *KeyGenerator) ScriptKey(scriptID string) string {
	return g.Key(NamespaceScripts, scriptID)
}

// TaskScriptsKey returns
// "scripts:v1:task_scripts:<taskID>:<statusFilter>:<limit>:<offset>".
func (g *KeyGenerator) TaskScriptsKey(taskID, statusFilter string, limit, offset int) string {
	return g.Key(NamespaceScripts, "task_scripts", taskID, statusFilter, strconv.Itoa(limit), strconv.Itoa(offset))
}

// StoryboardKey returns "storyboards:v1:<storyboardID>".
func (g *KeyGenerator) StoryboardKey(storyboardID string) string {
	return g.Key(NamespaceStoryboards, storyboardID)
}

// TaskStoryboardsKey returns
// "storyboards:v1:task_storyboards:<taskID>:<statusFilter>:<limit>:<offset>".
func (g *KeyGenerator) TaskStoryboardsKey(taskID, statusFilter string, limit, offset int) string {
	return g.Key(NamespaceStoryboards, "task_storyboards", taskID, statusFilter, strconv.Itoa(limit), strconv.Itoa(offset))
}

// ResourceKey returns "resources:v1:<resourceID>".
func (g *KeyGenerator) ResourceKey(resourceID string) string {
	return g.Key(NamespaceResources, resourceID)
}

// TaskResourcesKey returns
// "resources:v1:task_resources:<taskID>:<resourceType>:<limit>:<offset>".
func (g *KeyGenerator) TaskResourcesKey(taskID, resourceType string, limit, offset int) string {
	return g.Key(NamespaceResources, "task_resources", taskID, resourceType, strconv.Itoa(limit), strconv.Itoa(offset))
}

// FirstFrameImagesKey returns "resources:v1:first_frame_images:<taskID>".
func (g *KeyGenerator) FirstFrameImagesKey(taskID string) string {
	return g.Key(NamespaceResources, "first_frame_images", taskID)
}

// TaskVideosKey returns "resources:v1:task_videos:<taskID>".
func (g *KeyGenerator) TaskVideosKey(taskID string) string {
	return g.Key(NamespaceResources, "task_videos", taskID)
}

// maxParamsLen is the longest parameter part APIResponseKey keeps readable;
// a longer one is replaced by its SHA-256.
const maxParamsLen = 128

// APIResponseKey returns "api:v1:response:<endpoint>:<params>". params are
// rendered as "k1=v1&k2=v2" in sorted key order, so map order never changes
// the key; "&", "=" and "%" inside names and values are percent-escaped so
// two different maps never render alike. A rendering longer than 128 bytes
// once escaped is replaced by its SHA-256 in hex (which holds no "=", so it cannot equal
// a rendering). An empty map renders as "".
func (g *KeyGenerator) APIResponseKey(endpoint string, params map[string]string) string {
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		writeParam(&b, k)
		b.WriteByte('=')
		writeParam(&b, params[k])
	}
	p := b.String()
	if len(EscapeComponent(p)) > maxParamsLen {
		sum := sha256.Sum256([]byte(p))
		p = hex.EncodeToString(sum[:])
	}
	return g.Key(NamespaceAPI, "response", endpoint, p)
}

// writeParam writes s with "%", "&" and "=" percent-escaped.
func writeParam(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '&', '=':
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xF])
		default:
			b.WriteByte(c)
		}
	}
}

// UserKey returns "user:v1:<dataType>:<userID>".
func (g *KeyGenerator) UserKey(userID, dataType string) string {
	return g.Key(NamespaceUser, dataType, userID)
}

// AgentStateKey returns "agent:v1:agent_state:<agentName>:<taskID>".
func (g *KeyGenerator) AgentStateKey(agentName, taskID string) string {
	return g.Key(NamespaceAgent, "agent_state", agentName, taskID)
}

func activeOrAll(activeOnly bool) string {
	if activeOnly {
		return "active"
	}
	return "all"
}

// ParseKey splits a key built by a [KeyGenerator] back into its namespace,
// version and unescaped parts. It returns an error wrapping [ErrInvalidKey]
// when key does not have that form or holds an invalid escape.
func ParseKey(key string) (Namespace, Version, []string, error) {
	segs := strings.Split(key, ":")
	if len(segs) < 2 || len(segs[1]) < 2 || segs[1][0] != 'v' {
		return "", 0, nil, fmt.Errorf("%w: %q is not namespace:version:parts", ErrInvalidKey, key)
	}
	v, err := strconv.Atoi(segs[1][1:])
	if err != nil || v <= 0 || strconv.Itoa(v) != segs[1][1:] {
		return "", 0, nil, fmt.Errorf("%w: bad version in %q", ErrInvalidKey, key)
	}
	for i, s := range segs {
		if segs[i], err = UnescapeComponent(s); err != nil {
			return "", 0, nil, err
		}
	}
	return Namespace(segs[0]), Version(v), segs[2:], nil
}

const hexDigits = "0123456789ABCDEF"

// needsEscape reports whether ASCII byte c is escaped in a component.
func needsEscape(c byte) bool {
	switch {
	case c <= ' ' || c == 0x7f:
		return true
	}
	switch c {
	case ':', '%', '*', '?', '[', ']', '\\', '{', '}':
		return true
	}
	return false
}

// EscapeComponent returns s with every byte that could break a key
// percent-escaped as %XX: ":" (the separator), "%", the glob characters
// "* ? [ ] \", the cluster hash-tag braces "{ }", ASCII and Unicode
// whitespace, control characters and invalid UTF-8. Letters (any script),
// digits and other punctuation such as "_ - . / @ =" stay as they are, so
// ordinary ids are readable in redis-cli. Escaping is injective; it is
// undone by [UnescapeComponent].
func EscapeComponent(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if needsEscape(c) {
				break
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || unicode.IsSpace(r) || unicode.IsControl(r) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if needsEscape(c) {
				b.WriteByte('%')
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xF])
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || unicode.IsSpace(r) || unicode.IsControl(r) {
			for _, c := range []byte(s[i : i+size]) {
				b.WriteByte('%')
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xF])
			}
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// UnescapeComponent reverses [EscapeComponent]. It returns an error wrapping
// [ErrInvalidKey] for a malformed escape.
func UnescapeComponent(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("%w: truncated escape in %q", ErrInvalidKey, s)
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: bad escape in %q", ErrInvalidKey, s)
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	return string(b), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
