package rediscache

import "strconv"

// Namespace is the first segment of a key built by [KeyGenerator]: the kind
// of record the key caches. Any string may be a Namespace; the constants are
// the ones a task service needs.
type Namespace string

// The namespaces of a task service.
const (
	NamespaceTasks         Namespace = "tasks"
	NamespaceConversations Namespace = "conversations"
	NamespaceScripts       Namespace = "scripts"
	NamespaceStoryboards   Namespace = "storyboards"
	NamespaceResources     Namespace = "resources"
	NamespaceAPI           Namespace = "api"
	NamespaceSessions      Namespace = "sessions"
	NamespaceUser          Namespace = "user"
	NamespaceAgent         Namespace = "agent"
)

// Namespaces lists the predefined namespaces, in a fixed order.
func Namespaces() []Namespace {
	return []Namespace{
		NamespaceTasks, NamespaceConversations, NamespaceScripts, NamespaceStoryboards,
		NamespaceResources, NamespaceAPI, NamespaceSessions, NamespaceUser, NamespaceAgent,
	}
}

// Version is the schema version in a key: bump it when a cached type
// changes shape, and old entries are simply never read again.
type Version int

// Key versions.
const (
	V1 Version = 1
	V2 Version = 2
	V3 Version = 3
)

// String renders the version as it appears in keys: "v1", "v2", ...
func (v Version) String() string { return "v" + strconv.Itoa(int(v)) }
