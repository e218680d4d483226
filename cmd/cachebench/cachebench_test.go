package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rediscache/rediscache"
)

const testScale = 0.01

// seeded returns a freshly seeded SQLite store at testScale, closed (and
// its directory removed) when the test ends.
func seeded(t *testing.T) (*store, seedCounts) {
	t.Helper()
	ctx := context.Background()
	st, err := openStore(ctx, "", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.close(); err != nil {
			t.Error(err)
		}
	})
	cnt, err := st.seed(ctx, testScale, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, cnt
}

// shared is one seeded store for the tests that only read, closed by
// TestMain.
var shared struct {
	once sync.Once
	st   *store
	cnt  seedCounts
	err  error
}

// sharedStore returns the shared read-only store; tests must not write to it.
func sharedStore(t *testing.T) (*store, seedCounts) {
	t.Helper()
	shared.once.Do(func() {
		ctx := context.Background()
		if shared.st, shared.err = openStore(ctx, "", 4); shared.err == nil {
			shared.cnt, shared.err = shared.st.seed(ctx, testScale, 1, nil)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.st, shared.cnt
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.st != nil {
		if err := shared.st.close(); err != nil {
			fmt.Fprintln(os.Stderr, "close shared store:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newTestCache returns a rediscache Client on a fresh miniredis.
func newTestCache(t *testing.T) *rediscache.Client {
	t.Helper()
	m := miniredis.RunT(t)
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{m.Addr()}, Prefix: "cachebench-test",
		NamespaceTTLs: rediscache.DefaultNamespaceTTLs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newNearTestCache returns a rediscache Client with Options.LocalCache on a
// redis-server of its own (the near cache needs CLIENT TRACKING, which
// miniredis lacks).
func newNearTestCache(t *testing.T) *rediscache.Client {
	t.Helper()
	srv, err := startRedisServer(context.Background(), requireRedisServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr}, Prefix: "cachebench-test",
		NamespaceTTLs: rediscache.DefaultNamespaceTTLs(), LocalCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ids(t *testing.T, st *store, query string, args ...any) []int64 {
	t.Helper()
	rows, err := st.db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t *testing.T, st *store, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := st.db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSeedCounts(t *testing.T) {
	st, cnt := sharedStore(t)
	want := map[string]int64{"users": cnt.Users, "tasks": cnt.Tasks, "conversations": cnt.Conversations,
		"messages": cnt.Messages, "scripts": cnt.Scripts, "storyboards": cnt.Storyboards, "resources": cnt.Resources}
	for table, n := range want {
		if got := count(t, st, "SELECT COUNT(*) FROM "+table); got != n {
			t.Errorf("%s: %d rows, seed reported %d", table, got, n)
		}
	}
	// 20 users with 5-35 tasks each; per task 1-8 scripts, 0-12 scenes,
	// 0-16 resources; per user 1-40 conversations of 1-23 messages.
	if cnt.Users != 20 {
		t.Errorf("users = %d, want 20 at scale %v", cnt.Users, testScale)
	}
	checkRange := func(name string, n, lo, hi int64) {
		if n < lo || n > hi {
			t.Errorf("%s = %d, want within [%d, %d]", name, n, lo, hi)
		}
	}
	checkRange("tasks", cnt.Tasks, 5*cnt.Users, 35*cnt.Users)
	checkRange("scripts", cnt.Scripts, cnt.Tasks, 8*cnt.Tasks)
	checkRange("storyboards", cnt.Storyboards, 0, 12*cnt.Tasks)
	checkRange("resources", cnt.Resources, 0, 16*cnt.Tasks)
	checkRange("conversations", cnt.Conversations, cnt.Users, 40*cnt.Users)
	checkRange("messages", cnt.Messages, cnt.Conversations, 23*cnt.Conversations)
	if avg := float64(cnt.Tasks) / float64(cnt.Users); avg < 12 || avg > 28 {
		t.Errorf("%.1f tasks per user, want about 20", avg)
	}

	// The same seed gives the same data.
	st2, cnt2 := seeded(t)
	if cnt2 != cnt {
		t.Fatalf("second seed: %+v, first %+v", cnt2, cnt)
	}
	ctx := context.Background()
	a, err := st.UserTasks(ctx, 1, "", 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := st2.UserTasks(ctx, 1, "", 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Error("two seeds with the same seed differ")
	}
	// Links stay inside a user's or a task's rows.
	for what, q := range map[string]string{
		"conversation about another user's task": `SELECT COUNT(*) FROM conversations c JOIN tasks t ON t.id = c.task_id
			WHERE t.user_id != c.user_id`,
		"scene drawn from another task's script": `SELECT COUNT(*) FROM storyboards b JOIN scripts s ON s.id = b.script_id
			WHERE s.task_id != b.task_id`,
		"resource generated for another task's scene": `SELECT COUNT(*) FROM resources r JOIN storyboards b ON b.id = r.storyboard_id
			WHERE b.task_id != r.task_id`,
		"read marker after the last message": `SELECT COUNT(*) FROM conversations c
			WHERE c.last_read_at > (SELECT MAX(created_at) FROM messages WHERE conversation_id = c.id)`,
	} {
		if n := count(t, st, q); n != 0 {
			t.Errorf("%d rows: %s", n, what)
		}
	}
	for _, idx := range []string{"tasks_user_status_created", "tasks_user_created", "conversations_user_active_updated",
		"conversations_user_updated", "conversations_task", "messages_conversation_created", "scripts_task_status_created",
		"storyboards_task_status_scene", "storyboards_script_status", "resources_task_type_created",
		"resources_storyboard_type_created"} {
		if count(t, st, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name = ?", idx) != 1 {
			t.Errorf("index %s missing", idx)
		}
	}
}

// The expectations of TestQueries are built in Go from the plain rows of
// each table, so that they do not share the reads' SQL (joins, correlated
// subqueries, window functions) they check.

type rawScript struct {
	id, version, created int64
	status, content      string
}

type rawBoard struct {
	id, scriptID, scene, created  int64
	status, description, imageURL string
}

type rawResource struct {
	id, boardID, size, created int64 // boardID 0: generated for no scene
	typ, url                   string
}

type rawMessage struct {
	id, created   int64
	role, content string
}

// scan runs query and calls each for every row, scanned into dest.
func scan(t *testing.T, st *store, query string, args []any, each func(), dest ...any) {
	t.Helper()
	rows, err := st.db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		each()
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func scriptsWhere(t *testing.T, st *store, where string, arg int64) []rawScript {
	t.Helper()
	var out []rawScript
	var v rawScript
	scan(t, st, "SELECT id, version, created_at, status, content FROM scripts WHERE "+where, []any{arg},
		func() { out = append(out, v) }, &v.id, &v.version, &v.created, &v.status, &v.content)
	return out
}

func boardsWhere(t *testing.T, st *store, where string, arg int64) []rawBoard {
	t.Helper()
	var out []rawBoard
	var v rawBoard
	scan(t, st, "SELECT id, script_id, scene, created_at, status, description, image_url FROM storyboards WHERE "+where, []any{arg},
		func() { out = append(out, v) }, &v.id, &v.scriptID, &v.scene, &v.created, &v.status, &v.description, &v.imageURL)
	return out
}

func resourcesWhere(t *testing.T, st *store, where string, arg int64) []rawResource {
	t.Helper()
	var out []rawResource
	var v rawResource
	var board sql.NullInt64
	scan(t, st, "SELECT id, storyboard_id, size_bytes, created_at, type, url FROM resources WHERE "+where, []any{arg},
		func() { v.boardID = board.Int64; out = append(out, v) }, &v.id, &board, &v.size, &v.created, &v.typ, &v.url)
	return out
}

func messagesOf(t *testing.T, st *store, conv int64) []rawMessage {
	t.Helper()
	var out []rawMessage
	var v rawMessage
	scan(t, st, "SELECT id, created_at, role, content FROM messages WHERE conversation_id = ?", []any{conv},
		func() { out = append(out, v) }, &v.id, &v.created, &v.role, &v.content)
	return out
}

// taskAndOwner returns a task's title and its owner's name.
func taskAndOwner(t *testing.T, st *store, task int64) (title, owner string) {
	t.Helper()
	var uid int64
	if err := st.db.QueryRow("SELECT title, user_id FROM tasks WHERE id = ?", task).Scan(&title, &uid); err != nil {
		t.Fatal(err)
	}
	if err := st.db.QueryRow("SELECT name FROM users WHERE id = ?", uid).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	return title, owner
}

func wantTaskRow(t *testing.T, st *store, id, matching int64) TaskRow {
	t.Helper()
	r := TaskRow{ID: id, Matching: matching}
	if err := st.db.QueryRow("SELECT title, status, priority, created_at, updated_at FROM tasks WHERE id = ?", id).
		Scan(&r.Title, &r.Status, &r.Priority, &r.CreatedAt, &r.UpdatedAt); err != nil {
		t.Fatal(err)
	}
	for _, s := range scriptsWhere(t, st, "task_id = ?", id) {
		r.ScriptCount++
		if s.status == "final" {
			r.FinalVersion = max(r.FinalVersion, s.version)
		}
	}
	for _, b := range boardsWhere(t, st, "task_id = ?", id) {
		r.StoryboardCount++
		if b.status == "approved" {
			r.ApprovedScenes++
		}
	}
	for _, x := range resourcesWhere(t, st, "task_id = ?", id) {
		r.ResourceCount++
		r.ResourceBytes += x.size
	}
	for _, c := range ids(t, st, "SELECT id FROM conversations WHERE task_id = ?", id) {
		for _, m := range messagesOf(t, st, c) {
			r.LastMessageAt = max(r.LastMessageAt, m.created)
		}
	}
	return r
}

func wantConversationRow(t *testing.T, st *store, id int64) ConversationRow {
	t.Helper()
	r := ConversationRow{ID: id}
	var active, lastRead int64
	var task sql.NullInt64
	if err := st.db.QueryRow("SELECT title, active, updated_at, task_id, last_read_at FROM conversations WHERE id = ?", id).
		Scan(&r.Title, &active, &r.UpdatedAt, &task, &lastRead); err != nil {
		t.Fatal(err)
	}
	r.Active, r.TaskID = active != 0, task.Int64
	if task.Valid {
		r.TaskTitle, _ = taskAndOwner(t, st, task.Int64)
	}
	var last rawMessage
	for _, m := range messagesOf(t, st, id) {
		r.MessageCount++
		if m.role == "assistant" && m.created > lastRead {
			r.UnreadCount++
		}
		if r.MessageCount == 1 || m.created > last.created || m.created == last.created && m.id > last.id {
			last = m
		}
	}
	if r.MessageCount > 0 {
		preview := []rune(last.content)
		r.LastMessageAt, r.LastRole, r.LastMessage = last.created, last.role, string(preview[:min(len(preview), previewChars)])
	}
	return r
}

func wantScriptRows(t *testing.T, st *store, task int64, status string) []ScriptRow {
	t.Helper()
	all := scriptsWhere(t, st, "task_id = ?", task)
	var finals int64
	for _, s := range all {
		if s.status == "final" {
			finals++
		}
	}
	title, owner := taskAndOwner(t, st, task)
	var out []ScriptRow
	for _, s := range all {
		if status != "" && s.status != status {
			continue
		}
		r := ScriptRow{ID: s.id, Version: s.version, Status: s.status, Content: s.content, Chars: int64(len(s.content)),
			CreatedAt: s.created, Versions: int64(len(all)), FinalVersions: finals, TaskTitle: title, Owner: owner}
		for _, b := range boardsWhere(t, st, "script_id = ?", s.id) {
			r.Scenes++
			if b.status == "approved" {
				r.ApprovedScenes++
			}
			r.Renders += int64(len(resourcesWhere(t, st, "storyboard_id = ?", b.id)))
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.CreatedAt > b.CreatedAt || a.CreatedAt == b.CreatedAt && a.ID > b.ID
	})
	return out[:min(len(out), scriptLimit)]
}

func wantStoryboardRows(t *testing.T, st *store, task int64, status string) []StoryboardRow {
	t.Helper()
	all := boardsWhere(t, st, "task_id = ?", task)
	var approved int64
	for _, b := range all {
		if b.status == "approved" {
			approved++
		}
	}
	title, owner := taskAndOwner(t, st, task)
	var out []StoryboardRow
	for _, b := range all {
		if status != "" && b.status != status {
			continue
		}
		r := StoryboardRow{ID: b.id, Scene: b.scene, Status: b.status, Description: b.description, ImageURL: b.imageURL,
			CreatedAt: b.created, Scenes: int64(len(all)), Approved: approved, TaskTitle: title, Owner: owner}
		if err := st.db.QueryRow("SELECT version FROM scripts WHERE id = ?", b.scriptID).Scan(&r.ScriptVersion); err != nil {
			t.Fatal(err)
		}
		var latest rawResource
		for _, x := range resourcesWhere(t, st, "storyboard_id = ?", b.id) {
			r.Renders++
			r.RenderBytes += x.size
			if x.typ == "image" && (latest.id == 0 || x.created > latest.created || x.created == latest.created && x.id > latest.id) {
				latest = x
			}
		}
		r.LatestRender = latest.url
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Scene < b.Scene || a.Scene == b.Scene && a.ID < b.ID
	})
	return out[:min(len(out), boardLimit)]
}

func wantResourceRows(t *testing.T, st *store, task int64, typ string) []ResourceRow {
	t.Helper()
	all := resourcesWhere(t, st, "task_id = ?", task)
	var total int64
	count, bytes := map[string]int64{}, map[string]int64{}
	for _, x := range all {
		total += x.size
		count[x.typ]++
		bytes[x.typ] += x.size
	}
	title, owner := taskAndOwner(t, st, task)
	var out []ResourceRow
	for _, x := range all {
		if typ != "" && x.typ != typ {
			continue
		}
		r := ResourceRow{ID: x.id, Type: x.typ, URL: x.url, SizeBytes: x.size, CreatedAt: x.created, TypeCount: count[x.typ],
			TypeBytes: bytes[x.typ], TotalBytes: total, TaskTitle: title, Owner: owner}
		if x.boardID != 0 {
			if err := st.db.QueryRow("SELECT scene, description FROM storyboards WHERE id = ?", x.boardID).
				Scan(&r.Scene, &r.SceneTitle); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.CreatedAt > b.CreatedAt || a.CreatedAt == b.CreatedAt && a.ID > b.ID
	})
	return out[:min(len(out), resourceLimit)]
}

// TestQueries checks each of the five reads, every field of every row,
// against expectations computed in Go from the plain rows: the task pages
// of the first users, every user's conversation lists, and the per-task
// lists of the first tasks that have scenes drawn from an older script
// version and images generated for a scene. It also requires the data to
// exercise every aggregate (no field is zero on every page).
func TestQueries(t *testing.T) {
	st, cnt := sharedStore(t)
	ctx := context.Background()
	nonZero := map[string]bool{}
	seen := func(name string, v bool) { nonZero[name] = nonZero[name] || v }

	t.Run("user tasks", func(t *testing.T) {
		for user := int64(1); user <= 3; user++ {
			for _, status := range taskPageStatuses {
				matching := count(t, st, "SELECT COUNT(*) FROM tasks WHERE user_id = ? AND (? = '' OR status = ?)", user, status, status)
				for _, off := range taskPageOffsets {
					got, err := st.UserTasks(ctx, user, status, taskPageLimit, off)
					if err != nil {
						t.Fatal(err)
					}
					pageIDs := ids(t, st, `SELECT id FROM tasks WHERE user_id = ? AND (? = '' OR status = ?)
						ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, user, status, status, taskPageLimit, off)
					want := []TaskRow{}
					for _, id := range pageIDs {
						want = append(want, wantTaskRow(t, st, id, matching))
					}
					if !reflect.DeepEqual(got.Rows, want) {
						t.Fatalf("user %d status %q offset %d:\n got %+v\nwant %+v", user, status, off, got.Rows, want)
					}
					for _, r := range got.Rows {
						seen("final version", r.FinalVersion > 0)
						seen("approved scenes", r.ApprovedScenes > 0)
						seen("resource bytes", r.ResourceBytes > 0)
						seen("last message", r.LastMessageAt > 0)
					}
				}
			}
			all, _ := st.UserTasks(ctx, user, "", taskPageLimit, 0)
			if n := count(t, st, "SELECT COUNT(*) FROM tasks WHERE user_id = ?", user); len(all.Rows) != int(min(n, taskPageLimit)) || n == 0 {
				t.Errorf("user %d: first page has %d tasks of %d", user, len(all.Rows), n)
			}
		}
	})

	t.Run("user conversations", func(t *testing.T) {
		for user := int64(1); user <= cnt.Users; user++ {
			for _, active := range conversationsOnly {
				got, err := st.UserConversations(ctx, user, active, conversationLimit, 0)
				if err != nil {
					t.Fatal(err)
				}
				want := []ConversationRow{}
				for _, id := range ids(t, st, `SELECT id FROM conversations WHERE user_id = ? AND (active = 1 OR ? = 0)
					ORDER BY updated_at DESC, id DESC LIMIT ?`, user, active, conversationLimit) {
					want = append(want, wantConversationRow(t, st, id))
				}
				if !reflect.DeepEqual(got.Rows, want) {
					t.Fatalf("user %d active %v:\n got %+v\nwant %+v", user, active, got.Rows, want)
				}
				for _, r := range got.Rows {
					if r.MessageCount == 0 || r.LastMessage == "" {
						t.Errorf("conversation %d: %d messages, last %q", r.ID, r.MessageCount, r.LastMessage)
					}
					seen("conversation task", r.TaskID != 0)
					seen("unread", r.UnreadCount > 0)
					seen("preview cut", len(r.LastMessage) == previewChars)
					seen("full page", len(got.Rows) == conversationLimit)
				}
			}
		}
	})

	// Tasks with a scene drawn from an older script version and an image
	// generated for a scene.
	tasks := ids(t, st, `SELECT DISTINCT b.task_id FROM storyboards b JOIN scripts s ON s.id = b.script_id
		WHERE s.version < (SELECT MAX(version) FROM scripts WHERE task_id = b.task_id)
		AND b.task_id IN (SELECT task_id FROM resources WHERE type = 'image' AND storyboard_id IS NOT NULL)
		ORDER BY b.task_id LIMIT 5`)
	if len(tasks) < 5 {
		t.Fatalf("only %d tasks with old-version scenes and generated images", len(tasks))
	}

	t.Run("task scripts", func(t *testing.T) {
		for _, task := range tasks {
			for _, f := range scriptFilters {
				got, err := st.TaskScripts(ctx, task, f, scriptLimit, 0)
				if err != nil {
					t.Fatal(err)
				}
				if want := wantScriptRows(t, st, task, f); !reflect.DeepEqual(got.Rows, append([]ScriptRow{}, want...)) {
					t.Fatalf("task %d filter %q:\n got %+v\nwant %+v", task, f, got.Rows, want)
				}
				if f == "" && (len(got.Rows) == 0 || got.Rows[0].Version != int64(len(got.Rows))) {
					t.Errorf("scripts of task %d: newest first expected, got %+v", task, got.Rows)
				}
				for _, r := range got.Rows {
					seen("script scenes", r.Scenes > 0)
					seen("script renders", r.Renders > 0)
					seen("old version scenes", r.Scenes > 0 && r.Version < r.Versions)
				}
			}
		}
	})

	t.Run("task storyboards", func(t *testing.T) {
		for _, task := range tasks {
			for _, f := range boardFilters {
				got, err := st.TaskStoryboards(ctx, task, f, boardLimit, 0)
				if err != nil {
					t.Fatal(err)
				}
				if want := wantStoryboardRows(t, st, task, f); !reflect.DeepEqual(got.Rows, append([]StoryboardRow{}, want...)) {
					t.Fatalf("task %d filter %q:\n got %+v\nwant %+v", task, f, got.Rows, want)
				}
				for i, r := range got.Rows {
					if f == "" && r.Scene != int64(i+1) {
						t.Errorf("task %d: scene %d at position %d", task, r.Scene, i)
					}
					seen("scene renders", r.RenderBytes > 0)
					seen("latest render", r.LatestRender != "")
				}
			}
		}
	})

	t.Run("task resources", func(t *testing.T) {
		for _, task := range tasks {
			for _, f := range resourceFilters {
				got, err := st.TaskResources(ctx, task, f, resourceLimit, 0)
				if err != nil {
					t.Fatal(err)
				}
				if want := wantResourceRows(t, st, task, f); !reflect.DeepEqual(got.Rows, append([]ResourceRow{}, want...)) {
					t.Fatalf("task %d filter %q:\n got %+v\nwant %+v", task, f, got.Rows, want)
				}
				if f == "" && len(got.Rows) == 0 {
					t.Errorf("task %d has no resources", task)
				}
				for _, r := range got.Rows {
					seen("resource scene", r.Scene > 0)
					seen("type totals below total", r.TypeBytes < r.TotalBytes)
				}
			}
		}
	})

	t.Run("missing ids give empty pages", func(t *testing.T) {
		got, err := st.TaskResources(ctx, 1<<40, "", resourceLimit, 0)
		if err != nil || got.Rows == nil || len(got.Rows) != 0 {
			t.Errorf("TaskResources of a missing task = %#v, %v; want an empty non-nil slice", got, err)
		}
		tp, err := st.UserTasks(ctx, 1<<40, "", taskPageLimit, 0)
		if err != nil || tp.Rows == nil || len(tp.Rows) != 0 {
			t.Errorf("UserTasks of a missing user = %#v, %v; want an empty non-nil slice", tp, err)
		}
	})

	for _, name := range []string{"final version", "approved scenes", "resource bytes", "last message", "conversation task",
		"unread", "preview cut", "full page", "script scenes", "script renders", "old version scenes", "scene renders",
		"latest render", "resource scene", "type totals below total"} {
		if !nonZero[name] {
			t.Errorf("%s: never seen on the checked pages, so never checked", name)
		}
	}
}

// replay runs reqs in order, through the cache or not, and returns every
// result.
func replay(t *testing.T, w *Workload, reqs []Request, cached bool) (out []any, hits int) {
	t.Helper()
	ctx := context.Background()
	for _, req := range reqs {
		var v any
		var err error
		if cached {
			var src rediscache.Source
			v, src, err = w.cachedRead(ctx, req)
			if isHit(src) {
				hits++
			}
		} else {
			v, err = w.read(ctx, req)
		}
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		out = append(out, v)
	}
	return out, hits
}

// diff returns the indexes where a and b differ, versions included.
func diff(a, b []any) []int {
	var d []int
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			d = append(d, i)
		}
	}
	return d
}

// diffRows returns the indexes where the pages of a and b differ in their
// rows, whatever their versions: where a write changed what a page shows.
func diffRows(a, b []any) []int {
	rows := func(p any) any { return reflect.ValueOf(p).FieldByName("Rows").Interface() }
	var d []int
	for i := range a {
		if !reflect.DeepEqual(rows(a[i]), rows(b[i])) {
			d = append(d, i)
		}
	}
	return d
}

// TestCachedMatchesUncached replays one request sequence against the
// database and through the cache, before and after writes, and requires
// identical answers whenever the writes invalidated; without invalidation
// the cache must be caught serving stale pages (or the test proves
// nothing).
func TestCachedMatchesUncached(t *testing.T) {
	st, cnt := seeded(t) // the modes run one after the other on the same data
	for _, mode := range []string{"exact", "prefix", "exact+localcache", "prefix+localcache"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			w, err := newWorkload(ctx, st, cnt, 1.0, 0, 7)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(mode, "+localcache") {
				w.cache = newNearTestCache(t)
			} else {
				w.cache = newTestCache(t)
			}
			w.prefix = strings.HasPrefix(mode, "prefix")

			r := rand.New(rand.NewPCG(7, 0))
			var reqs []Request
			for range 250 {
				reqs = append(reqs, w.next(r))
			}
			seen := map[Kind]bool{}
			for _, q := range reqs {
				seen[q.Kind] = true
			}
			if len(seen) != numReads {
				t.Fatalf("sequence covers %d of %d reads", len(seen), numReads)
			}

			db, _ := replay(t, w, reqs, false)
			cold, _ := replay(t, w, reqs, true)
			warm, hits := replay(t, w, reqs, true)
			if d := diff(db, cold); len(d) > 0 {
				t.Fatalf("cold cache differs from the database at %d requests, first %+v", len(d), reqs[d[0]])
			}
			if d := diff(db, warm); len(d) > 0 {
				t.Fatalf("warm cache differs from the database at %d requests, first %+v", len(d), reqs[d[0]])
			}
			if hits != len(reqs) {
				t.Errorf("second replay: %d hits of %d", hits, len(reqs))
			}

			// Writes that change pages in the sequence: a task status on a
			// user's first page, the newest script of a task, a message.
			writes := writesFor(t, w, reqs)
			stale := func(invalidate bool) {
				for _, req := range writes {
					if err := w.write(ctx, req, invalidate); err != nil {
						t.Fatal(err)
					}
				}
			}

			// Without invalidation the cache serves the old pages.
			stale(false)
			db2, _ := replay(t, w, reqs, false)
			cached2, _ := replay(t, w, reqs, true)
			changed := diffRows(db, db2)
			if len(changed) == 0 {
				t.Fatal("the writes changed no page of the sequence")
			}
			if d := diffRows(db2, cached2); len(d) == 0 {
				t.Fatal("without invalidation the cache still matched the database: the test cannot see staleness")
			}
			for _, k := range []Kind{KindUserTasks, KindUserConversations, KindTaskScripts} {
				found := false
				for _, i := range changed {
					found = found || reqs[i].Kind == k
				}
				if !found {
					t.Errorf("no %v page changed", k)
				}
			}

			// With invalidation the cache agrees with the database again.
			for i := range writes {
				writes[i].Value = otherValue(writes[i])
			}
			stale(true)
			db3, _ := replay(t, w, reqs, false)
			cached3, _ := replay(t, w, reqs, true)
			if d := diff(db3, cached3); len(d) > 0 {
				t.Fatalf("after write+invalidation the cache differs at %d requests, first %+v", len(d), reqs[d[0]])
			}
			if len(diffRows(db2, db3)) == 0 {
				t.Fatal("the second writes changed nothing")
			}
			again, _ := replay(t, w, reqs, true)
			if d := diff(db3, again); len(d) > 0 {
				t.Fatalf("warm cache after invalidation differs at %d requests", len(d))
			}
		})
	}
}

// writesFor picks writes that touch pages of reqs.
func writesFor(t *testing.T, w *Workload, reqs []Request) []Request {
	t.Helper()
	ctx := context.Background()
	var out []Request
	var gotTask, gotScript, gotMsg bool
	for _, req := range reqs {
		switch {
		case req.Kind == KindUserTasks && req.Filter == "" && req.Offset == 0 && !gotTask:
			page, err := w.st.UserTasks(ctx, req.ID, "", taskPageLimit, 0)
			if err != nil || len(page.Rows) == 0 {
				continue
			}
			status := "running"
			if page.Rows[0].Status == status {
				status = "failed"
			}
			out, gotTask = append(out, Request{Kind: KindWrite, Write: writeTaskStatus, ID: page.Rows[0].ID, Value: status}), true
		case req.Kind == KindTaskScripts && req.Filter == "" && !gotScript:
			page, err := w.st.TaskScripts(ctx, req.ID, "", scriptLimit, 0)
			if err != nil || len(page.Rows) == 0 {
				continue
			}
			status := "review"
			if page.Rows[0].Status == status {
				status = "draft"
			}
			out, gotScript = append(out, Request{Kind: KindWrite, Write: writeScriptStatus, ID: req.ID, Value: status}), true
		case req.Kind == KindUserConversations && !req.Active && !gotMsg:
			page, err := w.st.UserConversations(ctx, req.ID, false, conversationLimit, 0)
			if err != nil || len(page.Rows) == 0 {
				continue
			}
			out, gotMsg = append(out, Request{Kind: KindWrite, Write: writeMessage, ID: page.Rows[len(page.Rows)-1].ID, Value: "a new message"}), true
		}
	}
	if !gotTask || !gotScript || !gotMsg {
		t.Fatalf("no page to write to in the sequence (task %v, script %v, message %v)", gotTask, gotScript, gotMsg)
	}
	return out
}

// otherValue returns a value for req that differs from the one it wrote.
func otherValue(req Request) string {
	switch req.Write {
	case writeTaskStatus:
		return map[string]string{"running": "pending", "failed": "done"}[req.Value]
	case writeScriptStatus:
		return "final"
	}
	return "another message"
}

// TestWritesInvalidateEveryPageTheyChange applies each write alone to a
// warm cache holding every page of one user and one of their tasks, and
// requires the cache to agree with the database after it, the write to
// have changed a page of every kind it is meant to affect (so that a
// missing invalidation shows): a task's status its owner's task pages; the
// newest script's status the task's script lists and the owner's task
// pages (their newest final version); a message the owner's conversation
// lists and, for a conversation about a task, the owner's task pages (the
// task's latest message time).
func TestWritesInvalidateEveryPageTheyChange(t *testing.T) {
	st, cnt := seeded(t)
	ctx := context.Background()
	for _, mode := range []string{"exact", "prefix"} {
		t.Run(mode, func(t *testing.T) {
			w, err := newWorkload(ctx, st, cnt, 1.0, 0, 7)
			if err != nil {
				t.Fatal(err)
			}
			w.cache = newTestCache(t)
			w.prefix = mode == "prefix"

			// A conversation about a task on its owner's first page.
			var conv, task, user int64
			for _, c := range ids(t, st, "SELECT id FROM conversations WHERE task_id IS NOT NULL ORDER BY id") {
				if err := st.db.QueryRow(`SELECT c.task_id, t.user_id FROM conversations c JOIN tasks t ON t.id = c.task_id
					WHERE c.id = ?`, c).Scan(&task, &user); err != nil {
					t.Fatal(err)
				}
				page, err := st.UserTasks(ctx, user, "", taskPageLimit, 0)
				if err != nil {
					t.Fatal(err)
				}
				if slices.ContainsFunc(page.Rows, func(r TaskRow) bool { return r.ID == task }) {
					conv = c
					break
				}
			}
			if conv == 0 {
				t.Fatal("no conversation about a task on its owner's first page")
			}
			var reqs []Request
			for _, st := range taskPageStatuses {
				for _, off := range taskPageOffsets {
					reqs = append(reqs, Request{Kind: KindUserTasks, ID: user, Filter: st, Offset: off})
				}
			}
			for _, a := range conversationsOnly {
				reqs = append(reqs, Request{Kind: KindUserConversations, ID: user, Active: a})
			}
			for _, f := range scriptFilters {
				reqs = append(reqs, Request{Kind: KindTaskScripts, ID: task, Filter: f})
			}
			for _, f := range boardFilters {
				reqs = append(reqs, Request{Kind: KindTaskStoryboards, ID: task, Filter: f})
			}
			for _, f := range resourceFilters {
				reqs = append(reqs, Request{Kind: KindTaskResources, ID: task, Filter: f})
			}

			newest := func() string {
				page, err := st.TaskScripts(ctx, task, "", 1, 0)
				if err != nil || len(page.Rows) != 1 {
					t.Fatalf("newest script of task %d: %v %v", task, page, err)
				}
				return page.Rows[0].Status
			}
			var status string
			if err := st.db.QueryRow("SELECT status FROM tasks WHERE id = ?", task).Scan(&status); err != nil {
				t.Fatal(err)
			}
			writes := []struct {
				req   Request
				kinds []Kind
			}{
				{Request{Kind: KindWrite, Write: writeTaskStatus, ID: task, Value: map[bool]string{true: "done", false: "failed"}[status != "done"]},
					[]Kind{KindUserTasks}},
				{Request{Kind: KindWrite, Write: writeScriptStatus, ID: task, Value: map[bool]string{true: "final", false: "review"}[newest() != "final"]},
					[]Kind{KindTaskScripts, KindUserTasks}},
				{Request{Kind: KindWrite, Write: writeMessage, ID: conv, Value: "one more message"},
					[]Kind{KindUserConversations, KindUserTasks}},
			}
			for _, wr := range writes {
				before, _ := replay(t, w, reqs, false)
				if cached, _ := replay(t, w, reqs, true); len(diff(before, cached)) > 0 {
					t.Fatalf("before %+v: the cache differs from the database", wr.req)
				}
				if _, hits := replay(t, w, reqs, true); hits != len(reqs) {
					t.Fatalf("before %+v: %d hits of %d on a warm cache", wr.req, hits, len(reqs))
				}
				if err := w.write(ctx, wr.req, true); err != nil {
					t.Fatal(err)
				}
				after, _ := replay(t, w, reqs, false)
				cached, _ := replay(t, w, reqs, true)
				if d := diff(after, cached); len(d) > 0 {
					t.Fatalf("after %+v: the cache serves %d stale pages, first %+v", wr.req, len(d), reqs[d[0]])
				}
				changed := map[Kind]bool{}
				for _, i := range diffRows(before, after) {
					changed[reqs[i].Kind] = true
				}
				for _, k := range wr.kinds {
					if !changed[k] {
						t.Errorf("%+v changed no %v page: the test cannot see its invalidation", wr.req, k)
					}
				}
			}
		})
	}
}

func TestInvalidatePrefixMatchesTaskPageKeys(t *testing.T) {
	w := &Workload{keys: rediscache.NewKeyGenerator(rediscache.V1)}
	prefix := w.keys.Key(rediscache.NamespaceTasks, "user_tasks", userKey(12)) + ":"
	for _, st := range taskPageStatuses {
		for _, off := range taskPageOffsets {
			if k := w.keys.UserTasksKey(userKey(12), st, taskPageLimit, off); !strings.HasPrefix(k, prefix) {
				t.Errorf("%s does not start with %s", k, prefix)
			}
		}
	}
	if k := w.keys.UserTasksKey(userKey(123), "", taskPageLimit, 0); strings.HasPrefix(k, prefix) {
		t.Errorf("user 123's key %s is under user 12's prefix", k)
	}
}

// requireRedisServer skips the test when redis-server is not on PATH,
// unless REDISCACHE_REQUIRE_REDIS is set, which makes it fail.
func requireRedisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("REDISCACHE_REQUIRE_REDIS") != "" {
			t.Fatal("redis-server not on PATH")
		}
		t.Skip("redis-server not on PATH")
	}
	return bin
}

// TestRunReport runs the whole benchmark at a tiny size on a redis-server
// it starts itself (as the command does) and checks that all three tiers
// run and report: every query of every tier, the table, the JSON and the
// chart.
func TestRunReport(t *testing.T) {
	requireRedisServer(t)
	cfg := Config{Scale: testScale, Workers: 4, Ops: 800, Warmup: 50 * time.Millisecond,
		Writes: 0.05, Zipf: 1.0, Seed: 3, Quiet: true}
	res, err := Run(context.Background(), cfg, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if got := tierIDsOf(res); !slices.Equal(got, []string{"db", "redis", "local"}) || len(res.Skipped) != 0 {
		t.Fatalf("tiers %v, skipped %+v; want db, redis, local and none skipped", got, res.Skipped)
	}
	if !slices.Equal(res.Config.Tiers, tierIDsOf(res)) {
		t.Errorf("config lists tiers %v, ran %v", res.Config.Tiers, tierIDsOf(res))
	}
	for _, tr := range res.Tiers {
		checkTier(t, tr, uint64(cfg.Ops), true)
	}
	if db := res.Tiers[0]; db.StaleReads != 0 {
		t.Errorf("the database alone had %d stale reads (%s): the check is wrong", db.StaleReads, db.FirstStale)
	}
	for _, tr := range res.Tiers[1:] {
		t.Logf("%s: %d stale reads %v %s", tr.ID, tr.StaleReads, tr.StaleBySource, tr.FirstStale)
	}
	if res.ElapsedSeconds < res.Database.SeedSeconds || res.ElapsedSeconds <= 0 {
		t.Errorf("elapsed %.3fs, seeding %.3fs", res.ElapsedSeconds, res.Database.SeedSeconds)
	}

	var table bytes.Buffer
	if err := writeTable(&table, res); err != nil {
		t.Fatal(err)
	}
	want := append(kindNames[:numReads:numReads], "all reads", "writes (+invalidation)", "all operations",
		"p50", "p99", "speed-up p50", "req/s", "hit rate", "DB queries saved", "stale reads", "elapsed:",
		"database round trip: none, the database is in-process", "compression none", "redis: Redis memory", "local: rediscache Stats")
	for _, tr := range res.Tiers {
		want = append(want, tr.Costs)
	}
	for _, w := range want {
		if !strings.Contains(table.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, table.String())
		}
	}
	t.Logf("\n%s", table.String())

	var js bytes.Buffer
	if err := writeJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Tiers []struct {
			ID      string `json:"id"`
			Queries []struct {
				ID      string `json:"id"`
				Latency struct {
					P50Ms float64 `json:"p50_ms"`
				} `json:"latency"`
			} `json:"queries"`
			StaleReads *uint64 `json:"stale_reads"`
			Redis      *struct {
				Keys int64 `json:"keys"`
			} `json:"redis"`
		} `json:"tiers"`
		Elapsed float64 `json:"elapsed_seconds"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Tiers) != 3 || back.Elapsed != res.ElapsedSeconds {
		t.Fatalf("JSON round trip: %+v", back)
	}
	for i, tr := range back.Tiers {
		if tr.ID != res.Tiers[i].ID || len(tr.Queries) != int(numKinds) || tr.StaleReads == nil ||
			(tr.Redis == nil) != (tr.ID == "db") {
			t.Errorf("JSON tier %d: %+v", i, tr)
		}
		for j, q := range tr.Queries {
			if q.ID != kindIDs[j] || q.Latency.P50Ms <= 0 {
				t.Errorf("JSON tier %s query %d: %+v", tr.ID, j, q)
			}
		}
	}

	file := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(file, res); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 300 {
		t.Errorf("chart is %v", b)
	}
}

func tierIDsOf(res *Result) []string {
	var ids []string
	for _, tr := range res.Tiers {
		ids = append(ids, tr.ID)
	}
	return ids
}

// checkTier checks one tier's figures: every kind ran without errors, the
// latencies are ordered, a cache tier hit and saved queries and counted
// them consistently with the library, and the database alone counts every
// read as a query. withDB says whether a database tier ran, giving the
// others speed-ups.
func checkTier(t *testing.T, tr TierResult, ops uint64, withDB bool) {
	t.Helper()
	if len(tr.Queries) != int(numKinds) {
		t.Fatalf("%s: %d query rows, want %d", tr.ID, len(tr.Queries), numKinds)
	}
	if tr.Phase.Ops != ops || tr.Phase.Errors != 0 {
		t.Errorf("%s: %d ops, %d errors (%s); want %d ops", tr.ID, tr.Phase.Ops, tr.Phase.Errors, tr.Phase.FirstError, ops)
	}
	cached := tr.ID != "db"
	var reads uint64
	for i, q := range tr.Queries {
		l := q.Latency
		if q.ID != kindIDs[i] || q.Name != kindNames[i] {
			t.Errorf("%s: row %d is %s/%s", tr.ID, i, q.ID, q.Name)
		}
		if l.Count == 0 || l.Errors != 0 {
			t.Errorf("%s %s: %d samples, %d errors", tr.ID, q.Name, l.Count, l.Errors)
		}
		if !(0 < l.P50Ms && l.P50Ms <= l.P99Ms && l.P99Ms <= l.MaxMs && l.MeanMs <= l.MaxMs && l.ReqPerSec > 0) {
			t.Errorf("%s %s: insane latency %+v", tr.ID, q.Name, l)
		}
		if (q.SpeedupP50 > 0) != (cached && withDB) || (q.SpeedupP99 > 0) != (cached && withDB) {
			t.Errorf("%s %s: speed-ups %v %v", tr.ID, q.Name, q.SpeedupP50, q.SpeedupP99)
		}
		if Kind(i) == KindWrite {
			continue
		}
		reads += l.Count
		if q.DBQueries+q.DBQueriesSaved != l.Count {
			t.Errorf("%s %s: %d DB queries + %d saved != %d requests", tr.ID, q.Name, q.DBQueries, q.DBQueriesSaved, l.Count)
		}
		if cached && (q.HitRate <= 0 || q.HitRate > 1 || q.Hit == nil || q.Miss == nil) {
			t.Errorf("%s %s: hit rate %v, split %v %v", tr.ID, q.Name, q.HitRate, q.Hit, q.Miss)
		}
		if !cached && (q.HitRate != 0 || q.DBQueriesSaved != 0 || q.Hit != nil) {
			t.Errorf("database %s: hit rate %v, %d saved", q.Name, q.HitRate, q.DBQueriesSaved)
		}
	}
	if tr.AllReads.Latency.Count != reads {
		t.Errorf("%s all reads: %d, sum of rows %d", tr.ID, tr.AllReads.Latency.Count, reads)
	}
	var stale uint64
	for _, q := range tr.Queries {
		stale += q.StaleReads
	}
	if stale != tr.StaleReads || tr.AllReads.StaleReads != tr.StaleReads {
		t.Errorf("%s: %d stale reads, %d over the rows, %d over all reads", tr.ID, tr.StaleReads, stale, tr.AllReads.StaleReads)
	}
	if !cached {
		if tr.Library != nil || tr.Redis != nil {
			t.Errorf("database tier has library stats or Redis figures")
		}
		return
	}
	if tr.Library == nil || tr.Redis == nil || tr.Library.Hits == 0 || tr.Redis.Keys == 0 {
		t.Fatalf("%s: library %+v, redis %+v", tr.ID, tr.Library, tr.Redis)
	}
	if math.Abs(tr.Library.HitRate-tr.AllReads.HitRate) > 0.05 {
		t.Errorf("%s: library hit rate %.3f, measured %.3f", tr.ID, tr.Library.HitRate, tr.AllReads.HitRate)
	}
}

// TestTiers checks which tiers run where: by default every tier the Redis
// can serve, the LocalCache tier skipped with a note on miniredis (the
// embedded fallback, or a miniredis address given with -redis); tiers
// named by -tiers (or -localcache) run or fail.
func TestTiers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noPath     bool // no redis-server on PATH: Run falls back to miniredis
		tiers      []string
		localCache bool
		comp       string // -compression
		wantTiers  []string
		wantSkip   string // in the skip reason of the local tier, "" for no skip
		wantErr    string
	}{
		{name: "embedded miniredis fallback", noPath: true, wantTiers: []string{"db", "redis"}, wantSkip: "embedded miniredis"},
		{name: "miniredis given", wantTiers: []string{"db", "redis"}, wantSkip: "rejects CLIENT TRACKING"},
		{name: "-tiers redis", tiers: []string{"redis"}, wantTiers: []string{"redis"}},
		{name: "-tiers redis -compression s2", tiers: []string{"redis"}, comp: "s2", wantTiers: []string{"redis"}},
		{name: "-tiers local,db", tiers: []string{"local", "db"}, wantErr: "-tiers local"},
		{name: "-localcache", localCache: true, wantErr: "-tiers local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Scale: testScale / 2, Workers: 2, Ops: 200, Writes: 0.05, Zipf: 1.0, Seed: 3, Quiet: true,
				Tiers: tc.tiers, LocalCache: tc.localCache, Compression: tc.comp}
			var m *miniredis.Miniredis
			if tc.noPath {
				t.Setenv("PATH", t.TempDir())
			} else {
				m = miniredis.RunT(t)
				cfg.Redis = m.Addr()
			}
			res, err := Run(context.Background(), cfg, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tierIDsOf(res); !slices.Equal(got, tc.wantTiers) {
				t.Errorf("ran %v, want %v", got, tc.wantTiers)
			}
			for _, tr := range res.Tiers {
				checkTier(t, tr, uint64(cfg.Ops), slices.Contains(tc.wantTiers, "db"))
			}
			var table bytes.Buffer
			if err := writeTable(&table, res); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantSkip == "" && len(res.Skipped) != 0:
				t.Errorf("skipped %+v", res.Skipped)
			case tc.wantSkip != "":
				if len(res.Skipped) != 1 || res.Skipped[0].ID != "local" || !strings.Contains(res.Skipped[0].Reason, tc.wantSkip) {
					t.Fatalf("skipped %+v, want local skipped for %q", res.Skipped, tc.wantSkip)
				}
				if want := "local     SKIPPED: " + res.Skipped[0].Reason; !strings.Contains(table.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, table.String())
				}
			}
			if tc.comp != "" && (res.Config.Compression != tc.comp || !strings.Contains(table.String(), "compression "+tc.comp)) {
				t.Errorf("compression %q; the table does not say %q:\n%s", res.Config.Compression, tc.comp, table.String())
			}
			if tc.noPath && (!res.Redis.Embedded || !strings.Contains(table.String(), "NOTE: Redis is an embedded miniredis")) {
				t.Errorf("embedded %v; the table does not say so:\n%s", res.Redis.Embedded, table.String())
			}
			if m != nil {
				for _, k := range m.Keys() {
					if !strings.Contains(k, "\x00") { // ClearAll keeps only the library's bookkeeping
						t.Errorf("key %q left on the Redis it was given", k)
					}
				}
			}
		})
	}
}

// plantStaleScripts caches the script lists of every task the first n
// requests of one worker of a phase with seed read, then changes each
// such task's newest script without invalidating: a write that finished
// but skipped its invalidation, leaving those cached script lists stale.
func plantStaleScripts(t *testing.T, w *Workload, seed uint64, n int) {
	t.Helper()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 0)) // as Workload.run draws worker 0's requests
	planted := map[int64]bool{}
	for range n {
		req := w.next(r)
		if req.Kind != KindTaskScripts || planted[req.ID] {
			continue
		}
		planted[req.ID] = true
		for _, f := range scriptFilters {
			if _, _, err := w.cachedRead(ctx, Request{Kind: KindTaskScripts, ID: req.ID, Filter: f}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.write(ctx, Request{Kind: KindWrite, Write: writeScriptStatus, ID: req.ID, Value: "review"}, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(planted) == 0 {
		t.Fatal("the phase reads no script list")
	}
}

// TestStaleReadCheck checks the stale-read check of single reads, for
// each kind of write and on each cache: a read after a write that
// invalidated is not stale; a read after a write that skipped its
// invalidation is, with the page's version and the one finished; a read
// while the write has committed but not finished its invalidation may see
// the old page, and is not stale.
func TestStaleReadCheck(t *testing.T) {
	st, cnt := seeded(t)
	ctx := context.Background()
	var task, conv, user int64
	if err := st.db.QueryRow(`SELECT c.id, c.task_id, c.user_id FROM conversations c WHERE c.task_id IS NOT NULL
		ORDER BY c.id LIMIT 1`).Scan(&conv, &task, &user); err != nil {
		t.Fatal(err)
	}
	writes := []struct {
		write Request
		read  Request
	}{
		{Request{Kind: KindWrite, Write: writeTaskStatus, ID: task}, Request{Kind: KindUserTasks, ID: user}},
		{Request{Kind: KindWrite, Write: writeScriptStatus, ID: task}, Request{Kind: KindTaskScripts, ID: task}},
		{Request{Kind: KindWrite, Write: writeScriptStatus, ID: task}, Request{Kind: KindUserTasks, ID: user, Filter: "done"}},
		{Request{Kind: KindWrite, Write: writeMessage, ID: conv}, Request{Kind: KindUserConversations, ID: user, Active: true}},
		{Request{Kind: KindWrite, Write: writeMessage, ID: conv}, Request{Kind: KindUserTasks, ID: user, Offset: 20}},
	}
	values := map[int][]string{writeTaskStatus: {"running", "done"}, writeScriptStatus: {"review", "final"},
		writeMessage: {"one message", "another"}}
	caches := []struct {
		name string
		new  func(*testing.T) *rediscache.Client
	}{{"miniredis", newTestCache}, {"LocalCache", newNearTestCache}}
	for _, c := range caches {
		t.Run(c.name, func(t *testing.T) {
			w, err := newWorkload(ctx, st, cnt, 1.0, 0, 7)
			if err != nil {
				t.Fatal(err)
			}
			w.cache = c.new(t)
			for _, tc := range []struct {
				name      string
				write     func(req Request) error
				wantStale bool
			}{
				{"invalidated", func(req Request) error { return w.write(ctx, req, true) }, false},
				{"invalidation skipped", func(req Request) error { return w.write(ctx, req, false) }, true},
				{"invalidation not finished", func(req Request) error { _, err := w.apply(ctx, req); return err }, false},
			} {
				for i, wr := range writes {
					wr.write.Value = values[wr.write.Write][i%2]
					if _, _, err := w.cachedRead(ctx, wr.read); err != nil { // cached before the write
						t.Fatal(err)
					}
					if err := tc.write(wr.write); err != nil {
						t.Fatal(err)
					}
					src, stale, err := w.checkedRead(ctx, wr.read, true)
					if err != nil {
						t.Fatal(err)
					}
					if (stale != nil) != tc.wantStale {
						t.Errorf("%s, %v after %+v: stale %v (source %v), want %v", tc.name, wr.read.Kind, wr.write, stale, src, tc.wantStale)
					}
					if stale != nil {
						c, id, _ := counterOf(wr.read)
						if !isHit(src) || stale.Got >= stale.Want || stale.Want != w.ver.finished(c, id) || stale.Key != w.key(wr.read) {
							t.Errorf("%s: %+v (source %v)", tc.name, stale, src)
						}
						t.Logf("%s", stale)
					}
					if _, stale, err := w.checkedRead(ctx, wr.read, false); err != nil || stale != nil {
						t.Errorf("%s: the database alone: stale %v, %v", tc.name, stale, err)
					}
					// Leave the cache and the versions agreeing for the next case.
					if _, err := w.cache.Delete(ctx, w.key(wr.read)); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// TestStaleReadsCounted runs phases through the cache and checks their
// stale-read counts: 0 with writes and nothing planted (one worker, so no
// read overlaps a write), and every hit of a planted stale script list.
// The cases share one database and Workload, so the versions it knows are
// the database's; each has a cache of its own.
func TestStaleReadsCounted(t *testing.T) {
	st, cnt := seeded(t)
	ctx := context.Background()
	w, err := newWorkload(ctx, st, cnt, 1.0, 0, 11)
	if err != nil {
		t.Fatal(err)
	}
	const ops, seed = 600, 5
	for _, tc := range []struct {
		name   string
		writes float64
		plant  bool
	}{
		{"nothing planted", 0.2, false},
		{"invalidations skipped", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w.cache, w.writes = newTestCache(t), tc.writes
			if tc.plant {
				plantStaleScripts(t, w, seed, ops)
			}
			p := w.run(ctx, phaseConfig{Workers: 1, Ops: ops, Seed: seed}, true)
			if p.FirstErr != nil {
				t.Fatal(p.FirstErr)
			}
			tr := tierResult(tiers[1], p, &[numKinds]uint64{})
			want := uint64(0)
			if tc.plant {
				want = p.Hits[KindTaskScripts]
				if want == 0 {
					t.Fatal("no hit of a planted script list")
				}
				if p.FirstStale == nil || p.FirstStale.Req.Kind != KindTaskScripts || tr.StaleBySource["hit"] != want {
					t.Errorf("first stale %v, by source %v", p.FirstStale, tr.StaleBySource)
				}
			} else if p.Lat[KindWrite].n == 0 || p.Hits[KindUserTasks] == 0 {
				t.Fatalf("%d writes, %d task page hits: nothing to check", p.Lat[KindWrite].n, p.Hits[KindUserTasks])
			}
			if got := p.Stale[KindTaskScripts]; got != want {
				t.Errorf("%d stale task script reads, want %d", got, want)
			}
			if got := tr.StaleReads; got != want {
				t.Errorf("%d stale reads in all, want %d (%s)", got, want, tr.FirstStale)
			}
		})
	}
}

// TestDBRTT checks -db-rtt: every statement waits the simulated round trip
// (a transaction one per statement), a cancelled context ends the wait, the
// mean wait is measured, and the report says the round trip is simulated.
func TestDBRTT(t *testing.T) {
	st, _ := seeded(t) // it writes
	ctx := context.Background()
	if _, err := st.UserTasks(ctx, 1, "", taskPageLimit, 0); err != nil || st.rttWaits.Load() != 0 {
		t.Fatalf("-db-rtt 0 waited %d times (%v)", st.rttWaits.Load(), err)
	}
	st.rtt = 3 * time.Millisecond
	t0 := time.Now()
	if _, err := st.UserTasks(ctx, 1, "", taskPageLimit, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < st.rtt {
		t.Errorf("a read took %v with -db-rtt %v", d, st.rtt)
	}
	t0 = time.Now()
	if _, err := st.AddMessage(ctx, 1<<40, 1, "hello", time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 5*st.rtt {
		t.Errorf("a 5-round-trip transaction took %v with -db-rtt %v", d, st.rtt)
	}
	if n, mean := st.rttWaits.Load(), st.rttMean(); n != 6 || mean < st.rtt {
		t.Errorf("%d waits of mean %v, want 6 of at least %v", n, mean, st.rtt)
	}
	st.rtt = time.Hour
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := st.TaskScripts(cctx, 1, "", scriptLimit, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a read in a wait of an hour cancelled after 20ms returned %v", err)
	}

	var table bytes.Buffer
	res := &Result{Database: DatabaseInfo{Engine: "SQLite", InProcess: true, SimulatedRTTMs: 1, SimulatedRTTMeanMs: 1.1}}
	if err := writeTable(&table, res); err != nil {
		t.Fatal(err)
	}
	if want := "database round trip: SIMULATED, -db-rtt 1.00ms waited before every statement (measured mean 1.10ms)"; !strings.Contains(table.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, table.String())
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, DBRTT: -time.Millisecond},
		{Scale: 0, Workers: 1, Duration: time.Second, Zipf: 1},
		{Scale: 1, Workers: 0, Duration: time.Second, Zipf: 1},
		{Scale: 1, Workers: 1, Duration: 0, Zipf: 1},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 0},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Writes: 1.5},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Invalidate: "all"},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Tiers: []string{"db", "memcached"}},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Tiers: []string{"redis", " redis"}},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Tiers: []string{}},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Tiers: []string{"db"}, LocalCache: true},
		{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Compression: "zstd"},
	} {
		if err := cfg.validate(); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	cfg := Config{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Tiers: []string{" local", "db "}}
	if err := cfg.validate(); err != nil || !slices.Equal(cfg.Tiers, []string{"local", "db"}) {
		t.Errorf("-tiers ' local,db ': %v, tiers %q", err, cfg.Tiers)
	}
	cfg = Config{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, LocalCache: true}
	if err := cfg.validate(); err != nil || !slices.Equal(cfg.Tiers, []string{"db", "local"}) {
		t.Errorf("-localcache: %v, tiers %q", err, cfg.Tiers)
	}
	for in, want := range map[string]string{"": "none", "none": "none", "s2": "s2"} {
		cfg = Config{Scale: 1, Workers: 1, Duration: time.Second, Zipf: 1, Compression: in}
		if err := cfg.validate(); err != nil || cfg.Compression != want {
			t.Errorf("-compression %q: %v, compression %q", in, err, cfg.Compression)
		}
	}
	if _, err := openStore(context.Background(), "mysql://x", 1); err == nil {
		t.Error("openStore accepted mysql://")
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.001, 10 * time.Microsecond}} {
		got := h.quantile(c.q)
		if rel := math.Abs(float64(got-c.want)) / float64(c.want); rel > 1.0/32 {
			t.Errorf("q%.3f = %v, want %v (±3%%)", c.q, got, c.want)
		}
	}
	if h.quantile(1) != 10*time.Millisecond || h.mean() != 5000500*time.Nanosecond {
		t.Errorf("max %v mean %v", h.quantile(1), h.mean())
	}
	for _, d := range []time.Duration{0, 1, 31, 32, 33, 1000, time.Hour, math.MaxInt64} {
		i := bucketOf(d)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d", d, i)
		}
		if mid := bucketMid(i); d >= 32 && math.Abs(float64(mid-d))/float64(d) > 1.0/32 {
			t.Errorf("bucket of %d has middle %d", d, mid)
		}
	}
	var empty hist
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("empty histogram")
	}
}

func TestZipf(t *testing.T) {
	const n = 1000
	z := newZipf(n, 1.0, 1)
	r := rand.New(rand.NewPCG(1, 2))
	freq := map[int64]int{}
	const draws = 200000
	for range draws {
		id := z.id(r)
		if id < 1 || id > n {
			t.Fatalf("id %d out of 1..%d", id, n)
		}
		freq[id]++
	}
	top := int64(z.perm[0]) + 1
	second := int64(z.perm[1]) + 1
	h := 0.0
	for k := 1; k <= n; k++ {
		h += 1 / float64(k)
	}
	if got, want := float64(freq[top])/draws, 1/h; math.Abs(got-want) > 0.01 {
		t.Errorf("rank 1 drawn %.3f of the time, want %.3f", got, want)
	}
	if got, want := float64(freq[second])/draws, 0.5/h; math.Abs(got-want) > 0.01 {
		t.Errorf("rank 2 drawn %.3f of the time, want %.3f", got, want)
	}
	if top == 1 && second == 2 {
		t.Error("popular ids are not spread over the table")
	}
}

func TestRebind(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND c = ? LIMIT ?"
	if got := rebind("sqlite", q); got != q {
		t.Errorf("sqlite: %s", got)
	}
	if got, want := rebind("postgres", q), "SELECT a FROM t WHERE b = $1 AND c = $2 LIMIT $3"; got != want {
		t.Errorf("postgres: %s, want %s", got, want)
	}
	if got, want := insertSQL("postgres", "t", []string{"a", "b"}, 2), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"; got != want {
		t.Errorf("insert: %s, want %s", got, want)
	}
}

// TestStartRedisServer starts a redis-server the way the command does and
// checks that stopping it kills that process and frees its port.
func TestStartRedisServer(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH")
	}
	ctx := context.Background()
	srv, err := startRedisServer(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()
	if strings.HasSuffix(srv.Addr, fmt.Sprintf(":%d", sharedRedisPort)) || !strings.HasPrefix(srv.Addr, "127.0.0.1:") {
		t.Fatalf("started on %s", srv.Addr)
	}
	c, err := rediscache.New(&rediscache.Options{Addrs: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, human, ok := redisMemory(ctx, c.Redis()); !ok || human == "" {
		t.Error("no INFO memory from redis-server")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", srv.Addr, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("%s still accepts connections after Close", srv.Addr)
	}
}
