package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Row types returned by the five reads. They are what the service would
// cache: plain fields, JSON-friendly, times as Unix milliseconds so both
// databases and the cache round-trip them exactly.

// Page is what a read returns and the cache keeps: the page's rows and the
// version of what they show, read by the same statement (so from the same
// snapshot). A version is a counter the writes raise in the transaction
// that changes what it covers: users.tasks_version for a user's task pages,
// users.conversations_version for their conversation lists,
// tasks.scripts_version for a task's script lists. Storyboards and
// resources are never written: their pages have version 0. Version is the
// only thing a cached page holds beyond its rows.
type Page[T any] struct {
	Version int64 `json:"version"`
	Rows    []T   `json:"rows"`
}

// TaskRow is one line of a user's tasks page: the task, what the page
// shows of its scripts, storyboards, resources and conversations, and how
// many of the user's tasks match the page's filter (for the pager).
type TaskRow struct {
	ID              int64  `json:"id"`
	Title           string `json:"title"`
	Status          string `json:"status"`
	Priority        int64  `json:"priority"`
	CreatedAt       int64  `json:"created_at"`
	UpdatedAt       int64  `json:"updated_at"`
	Matching        int64  `json:"matching"`         // the user's tasks with this page's filter
	ScriptCount     int64  `json:"script_count"`     // script versions
	FinalVersion    int64  `json:"final_version"`    // newest version marked final, 0 if none
	StoryboardCount int64  `json:"storyboard_count"` // scenes
	ApprovedScenes  int64  `json:"approved_scenes"`
	ResourceCount   int64  `json:"resource_count"`
	ResourceBytes   int64  `json:"resource_bytes"`
	LastMessageAt   int64  `json:"last_message_at"` // newest message of the task's conversations, 0 if none
}

// ConversationRow is one line of a user's conversation list.
type ConversationRow struct {
	ID            int64  `json:"id"`
	Title         string `json:"title"`
	Active        bool   `json:"active"`
	UpdatedAt     int64  `json:"updated_at"`
	TaskID        int64  `json:"task_id"` // the task it is about, 0 if none
	TaskTitle     string `json:"task_title"`
	MessageCount  int64  `json:"message_count"`
	UnreadCount   int64  `json:"unread_count"` // assistant messages after the user last read it
	LastMessageAt int64  `json:"last_message_at"`
	LastRole      string `json:"last_role"`
	LastMessage   string `json:"last_message"` // preview: its first previewChars characters
}

// previewChars is the length of a conversation's last-message preview.
const previewChars = 120

// ScriptRow is one version of a task's script, with the task it belongs
// to, the task's version counts and what was made from this version.
type ScriptRow struct {
	ID             int64  `json:"id"`
	Version        int64  `json:"version"`
	Status         string `json:"status"`
	Content        string `json:"content"`
	Chars          int64  `json:"chars"`
	CreatedAt      int64  `json:"created_at"`
	Versions       int64  `json:"versions"`        // of the task, any status
	FinalVersions  int64  `json:"final_versions"`  // of the task
	Scenes         int64  `json:"scenes"`          // storyboard scenes drawn from this version
	ApprovedScenes int64  `json:"approved_scenes"` // of those
	Renders        int64  `json:"renders"`         // resources generated for those scenes
	TaskTitle      string `json:"task_title"`
	Owner          string `json:"owner"`
}

// StoryboardRow is one scene of a task's storyboard, with the task, the
// storyboard's progress, the script version it was drawn from and what was
// generated for it.
type StoryboardRow struct {
	ID            int64  `json:"id"`
	Scene         int64  `json:"scene"`
	Status        string `json:"status"`
	Description   string `json:"description"`
	ImageURL      string `json:"image_url"`
	CreatedAt     int64  `json:"created_at"`
	Scenes        int64  `json:"scenes"`   // of the task, any status
	Approved      int64  `json:"approved"` // of the task
	ScriptVersion int64  `json:"script_version"`
	Renders       int64  `json:"renders"`       // resources generated for the scene
	RenderBytes   int64  `json:"render_bytes"`  // their total size
	LatestRender  string `json:"latest_render"` // URL of its newest generated image, "" if none
	TaskTitle     string `json:"task_title"`
	Owner         string `json:"owner"`
}

// ResourceRow is one file attached to a task, with the task, the scene it
// was generated for and the totals by type the resource panel shows.
type ResourceRow struct {
	ID         int64  `json:"id"`
	Type       string `json:"type"`
	URL        string `json:"url"`
	SizeBytes  int64  `json:"size_bytes"`
	CreatedAt  int64  `json:"created_at"`
	TypeCount  int64  `json:"type_count"`  // the task's resources of this type
	TypeBytes  int64  `json:"type_bytes"`  // their total size
	TotalBytes int64  `json:"total_bytes"` // of all the task's resources
	Scene      int64  `json:"scene"`       // of the scene it was generated for, 0 if none
	SceneTitle string `json:"scene_title"` // that scene's description
	TaskTitle  string `json:"task_title"`
	Owner      string `json:"owner"`
}

// Value sets the seed draws from; the workload's filters use the same ones.
var (
	taskStatuses   = []string{"pending", "running", "done", "failed"}
	scriptStatuses = []string{"draft", "review", "final"}
	boardStatuses  = []string{"draft", "approved"}
	resourceTypes  = []string{"image", "video", "audio", "document"}
)

// seedEpoch is the fixed origin of every seeded timestamp (2025-01-01 UTC),
// so a seed is identical from run to run.
var seedEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// store is the benchmark's database: a database/sql handle plus what
// differs between SQLite and PostgreSQL.
type store struct {
	db      *sql.DB
	kind    string // "sqlite" or "postgres"
	conns   int    // pool size
	desc    string // for the report: "SQLite (file)", "PostgreSQL 16.x"
	cleanup func() error

	// Prepared reads, keyed by query name (see prepare).
	stmts map[string]*sql.Stmt

	// rtt is a simulated network round trip waited before every
	// statement of the workload (-db-rtt); rttWaited and rttWaits add up
	// the waits as they really were.
	rtt       time.Duration
	rttWaited atomic.Int64
	rttWaits  atomic.Int64
}

// openStore opens the database named by dsn: "" for a fresh SQLite file in
// a temporary directory (removed by close), or a postgres:// URL, in which
// case all tables live in a new schema that close drops again.
func openStore(ctx context.Context, dsn string, conns int) (*store, error) {
	if dsn == "" {
		return openSQLite(ctx, conns)
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return openPostgres(ctx, dsn, conns)
	}
	return nil, fmt.Errorf("-db %q: want a postgres:// URL, or nothing for SQLite", dsn)
}

func openSQLite(ctx context.Context, conns int) (*store, error) {
	dir, err := os.MkdirTemp("", "cachebench-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "cachebench.db")
	// WAL lets readers run beside a writer; busy_timeout makes concurrent
	// writers wait instead of failing; _txlock=immediate takes the write
	// lock at BEGIN, so a transaction never fails to upgrade its lock.
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=busy_timeout(10000)&_pragma=cache_size(-16000)&_pragma=temp_store(MEMORY)"
	db, err := sql.Open("sqlite", dsn)
	if err == nil {
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		err = db.PingContext(ctx)
	}
	s := &store{db: db, kind: "sqlite", conns: conns, cleanup: func() error {
		var err error
		if db != nil {
			err = db.Close()
		}
		return errors.Join(err, os.RemoveAll(dir))
	}}
	if err != nil {
		return nil, errors.Join(err, s.cleanup())
	}
	var version string
	_ = db.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&version)
	s.desc = "SQLite " + version + " (modernc.org/sqlite, file in a temp dir)"
	return s, nil
}

func openPostgres(ctx context.Context, dsn string, conns int) (*store, error) {
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	defer func() { _ = admin.Close() }()
	schema := fmt.Sprintf("cachebench_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	drop := func() error {
		a, err := sql.Open("pgx", dsn)
		if err != nil {
			return err
		}
		defer func() { _ = a.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = a.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		return err
	}
	// Every pooled connection gets the schema through its search_path.
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errors.Join(err, drop())
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err == nil {
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		err = db.PingContext(ctx)
	}
	s := &store{db: db, kind: "postgres", conns: conns, cleanup: func() error {
		var err error
		if db != nil {
			err = db.Close()
		}
		return errors.Join(err, drop())
	}}
	if err != nil {
		return nil, errors.Join(err, s.cleanup())
	}
	var version string
	_ = db.QueryRowContext(ctx, "SHOW server_version").Scan(&version)
	s.desc = "PostgreSQL " + version + " (pgx, schema " + schema + ", dropped at exit)"
	return s, nil
}

// close closes the database and removes what openStore created.
func (s *store) close() error {
	for _, st := range s.stmts {
		_ = st.Close()
	}
	return s.cleanup()
}

// rebind rewrites the portable "?" placeholders of query into the
// driver's: unchanged for SQLite, $1, $2, ... for PostgreSQL. The queries
// here hold no "?" inside string literals.
func rebind(kind, query string) string {
	if kind != "postgres" || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// exec runs a statement without arguments (DDL, ANALYZE) in the store's
// dialect.
func (s *store) exec(ctx context.Context, query string) (sql.Result, error) {
	return s.db.ExecContext(ctx, rebind(s.kind, query))
}

// schema returns the DDL: tables first, then the indexes (created after the
// seed, which is faster than maintaining them row by row).
func (s *store) schema() (tables, indexes []string) {
	pk := "INTEGER PRIMARY KEY" // SQLite: an alias of the rowid
	if s.kind == "postgres" {
		pk = "BIGINT PRIMARY KEY"
	}
	tables = []string{
		// The *_version columns are the version counters of Page.
		`CREATE TABLE users (id ` + pk + `, name TEXT NOT NULL, email TEXT NOT NULL, created_at BIGINT NOT NULL,
			tasks_version BIGINT NOT NULL DEFAULT 0, conversations_version BIGINT NOT NULL DEFAULT 0)`,
		`CREATE TABLE tasks (id ` + pk + `, user_id BIGINT NOT NULL REFERENCES users(id), title TEXT NOT NULL,
			status TEXT NOT NULL, priority INTEGER NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
			scripts_version BIGINT NOT NULL DEFAULT 0)`,
		`CREATE TABLE conversations (id ` + pk + `, user_id BIGINT NOT NULL REFERENCES users(id),
			task_id BIGINT REFERENCES tasks(id), title TEXT NOT NULL, active INTEGER NOT NULL,
			updated_at BIGINT NOT NULL, last_read_at BIGINT NOT NULL)`,
		`CREATE TABLE messages (id ` + pk + `, conversation_id BIGINT NOT NULL REFERENCES conversations(id),
			role TEXT NOT NULL, content TEXT NOT NULL, created_at BIGINT NOT NULL)`,
		`CREATE TABLE scripts (id ` + pk + `, task_id BIGINT NOT NULL REFERENCES tasks(id), version INTEGER NOT NULL,
			status TEXT NOT NULL, content TEXT NOT NULL, created_at BIGINT NOT NULL)`,
		`CREATE TABLE storyboards (id ` + pk + `, task_id BIGINT NOT NULL REFERENCES tasks(id),
			script_id BIGINT NOT NULL REFERENCES scripts(id), scene INTEGER NOT NULL, status TEXT NOT NULL,
			description TEXT NOT NULL, image_url TEXT NOT NULL, created_at BIGINT NOT NULL)`,
		`CREATE TABLE resources (id ` + pk + `, task_id BIGINT NOT NULL REFERENCES tasks(id),
			storyboard_id BIGINT REFERENCES storyboards(id), type TEXT NOT NULL, url TEXT NOT NULL,
			size_bytes BIGINT NOT NULL, created_at BIGINT NOT NULL)`,
	}
	indexes = []string{
		`CREATE INDEX tasks_user_status_created ON tasks (user_id, status, created_at)`,
		`CREATE INDEX tasks_user_created ON tasks (user_id, created_at)`,
		`CREATE INDEX conversations_user_active_updated ON conversations (user_id, active, updated_at)`,
		`CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at)`,
		`CREATE INDEX conversations_task ON conversations (task_id)`,
		`CREATE INDEX messages_conversation_created ON messages (conversation_id, created_at)`,
		`CREATE INDEX scripts_task_status_created ON scripts (task_id, status, created_at)`,
		`CREATE INDEX storyboards_task_status_scene ON storyboards (task_id, status, scene)`,
		`CREATE INDEX storyboards_script_status ON storyboards (script_id, status)`,
		`CREATE INDEX resources_task_type_created ON resources (task_id, type, created_at)`,
		`CREATE INDEX resources_storyboard_type_created ON resources (storyboard_id, type, created_at)`,
	}
	return tables, indexes
}

// seedCounts is how many rows each table got.
type seedCounts struct {
	Users         int64 `json:"users"`
	Tasks         int64 `json:"tasks"`
	Conversations int64 `json:"conversations"`
	Messages      int64 `json:"messages"`
	Scripts       int64 `json:"scripts"`
	Storyboards   int64 `json:"storyboards"`
	Resources     int64 `json:"resources"`
}

// Total is the number of rows over all tables.
func (c seedCounts) Total() int64 {
	return c.Users + c.Tasks + c.Conversations + c.Messages + c.Scripts + c.Storyboards + c.Resources
}

// words feed the generated titles and texts.
var words = strings.Fields(`the a scene shot camera light night city river forest hero villain storm
	quiet loud close wide pan zoom cut fade red blue green golden dark bright morning evening voice music
	beat drum piano rain snow sun moon street car train door window smile tears run walk fall rise open
	end start again never always slowly quickly together alone story frame motion color sound`)

func sentence(r *rand.Rand, minWords, maxWords int) string {
	n := minWords + r.IntN(maxWords-minWords+1)
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// pick returns one of vals with the given cumulative weights (in percent).
func pick(r *rand.Rand, vals []string, cum []int) string {
	x := r.IntN(100)
	for i, c := range cum {
		if x < c {
			return vals[i]
		}
	}
	return vals[len(vals)-1]
}

// scaled returns round(n*scale), at least 1.
func scaled(n int, scale float64) int {
	return max(1, int(math.Round(float64(n)*scale)))
}

// seed creates the schema and fills it deterministically from seed:
// round(2000*scale) users with 5-35 tasks each (40,000 at scale 1), and
// per task 1-8 script versions, 0-12 storyboard scenes (each drawn from a
// version) and 0-16 resources (most images and videos generated for a
// scene); per user 1-40 conversations of 1-23 messages, 80% of them about
// one of the user's tasks. progress, when not nil, is called with the
// number of rows inserted so far.
func (s *store) seed(ctx context.Context, scale float64, seed uint64, progress func(int64)) (seedCounts, error) {
	tables, indexes := s.schema()
	for _, q := range tables {
		if _, err := s.exec(ctx, q); err != nil {
			return seedCounts{}, fmt.Errorf("create schema: %w", err)
		}
	}
	var cnt seedCounts
	var done int64
	report := func(n int) {
		done += int64(n)
		if progress != nil {
			progress(done)
		}
	}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	nUsers := scaled(2000, scale)

	users := s.newBatch("users", []string{"id", "name", "email", "created_at"}, report)
	tasks := s.newBatch("tasks", []string{"id", "user_id", "title", "status", "priority", "created_at", "updated_at"}, report)
	scripts := s.newBatch("scripts", []string{"id", "task_id", "version", "status", "content", "created_at"}, report)
	boards := s.newBatch("storyboards", []string{"id", "task_id", "script_id", "scene", "status", "description", "image_url", "created_at"}, report)
	resources := s.newBatch("resources", []string{"id", "task_id", "storyboard_id", "type", "url", "size_bytes", "created_at"}, report)
	convs := s.newBatch("conversations", []string{"id", "user_id", "task_id", "title", "active", "updated_at", "last_read_at"}, report)
	msgs := s.newBatch("messages", []string{"id", "conversation_id", "role", "content", "created_at"}, report)
	// Parents before children, so PostgreSQL's foreign keys hold at every
	// flush: all batches write through one transaction, flushed in order.
	order := []*batch{users, tasks, scripts, boards, resources, convs, msgs}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return cnt, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	flushAll := func() error {
		for _, b := range order {
			if err := b.flush(ctx, tx); err != nil {
				return err
			}
		}
		return nil
	}
	const day = int64(24 * time.Hour / time.Millisecond)
	for u := 1; u <= nUsers; u++ {
		uid := int64(u)
		created := seedEpoch + r.Int64N(180*day)
		users.add(uid, fmt.Sprintf("User %d", u), fmt.Sprintf("user%d@example.com", u), created)
		cnt.Users++
		firstTask := cnt.Tasks + 1
		for range 5 + r.IntN(31) {
			cnt.Tasks++
			tid := cnt.Tasks
			tCreated := created + r.Int64N(180*day)
			tasks.add(tid, uid, sentence(r, 3, 7), pick(r, taskStatuses, []int{15, 25, 90, 100}),
				int64(r.IntN(4)), tCreated, tCreated+r.Int64N(7*day))
			nScripts := 1 + r.IntN(8)
			for v := 1; v <= nScripts; v++ {
				cnt.Scripts++
				st := pick(r, scriptStatuses[:2], []int{50, 100})
				if v == nScripts && r.IntN(100) < 60 {
					st = "final"
				}
				scripts.add(cnt.Scripts, tid, int64(v), st, sentence(r, 40, 120), tCreated+int64(v)*3600_000)
			}
			// Scenes are drawn from a script version, most from the
			// newest; generated images and videos belong to a scene.
			firstBoard, lastScript := cnt.Storyboards+1, cnt.Scripts
			for sc := range r.IntN(13) {
				cnt.Storyboards++
				from := lastScript
				if r.IntN(100) < 30 {
					from -= r.Int64N(int64(nScripts))
				}
				boards.add(cnt.Storyboards, tid, from, int64(sc+1), pick(r, boardStatuses, []int{40, 100}), sentence(r, 10, 30),
					fmt.Sprintf("https://cdn.example.com/boards/%d/%d.png", tid, sc+1), tCreated+int64(sc+1)*60_000)
			}
			for range r.IntN(17) {
				cnt.Resources++
				typ := pick(r, resourceTypes, []int{60, 75, 90, 100})
				var board any
				if (typ == "image" || typ == "video") && cnt.Storyboards >= firstBoard && r.IntN(100) < 85 {
					board = firstBoard + r.Int64N(cnt.Storyboards-firstBoard+1)
				}
				resources.add(cnt.Resources, tid, board, typ, fmt.Sprintf("https://cdn.example.com/%s/%d/%d", typ, tid, cnt.Resources),
					int64(10_000+r.IntN(50_000_000)), tCreated+r.Int64N(day))
			}
		}
		for range 1 + r.IntN(40) {
			cnt.Conversations++
			cid := cnt.Conversations
			cCreated := created + r.Int64N(180*day)
			nMsgs := 1 + r.IntN(23)
			active := int64(0)
			if r.IntN(100) < 60 {
				active = 1
			}
			// Most conversations are about one of the user's tasks; half
			// have been read to the end, the others up to some message.
			var task any
			if r.IntN(100) < 80 {
				task = firstTask + r.Int64N(cnt.Tasks-firstTask+1)
			}
			read := nMsgs
			if r.IntN(100) < 50 {
				read = r.IntN(nMsgs)
			}
			convs.add(cid, uid, task, sentence(r, 2, 6), active, cCreated+int64(nMsgs)*90_000, cCreated+int64(read)*90_000)
			for m := 1; m <= nMsgs; m++ {
				cnt.Messages++
				role := "user"
				if m%2 == 0 {
					role = "assistant"
				}
				msgs.add(cnt.Messages, cid, role, sentence(r, 8, 40), cCreated+int64(m)*90_000)
			}
		}
		if u%50 == 0 {
			if err := flushAll(); err != nil {
				return cnt, err
			}
		}
	}
	if err := flushAll(); err != nil {
		return cnt, err
	}
	if err := tx.Commit(); err != nil { // also closes the batches' statements
		return cnt, err
	}
	for _, q := range indexes {
		if _, err := s.exec(ctx, q); err != nil {
			return cnt, fmt.Errorf("create index: %w", err)
		}
	}
	if err := s.analyze(ctx); err != nil {
		return cnt, fmt.Errorf("analyze: %w", err)
	}
	return cnt, s.prepare(ctx)
}

// analyze gathers planner statistics, as any production database has.
// On SQLite it keeps only sqlite_stat1: with sqlite_stat4 histograms
// SQLite re-prepares a statement whenever a bound value could change its
// plan, which here was every execution (a third of the CPU went to the
// parser) without ever changing a plan. The pool's connections are then
// reopened so that they all load the same statistics.
func (s *store) analyze(ctx context.Context) error {
	if _, err := s.exec(ctx, "ANALYZE"); err != nil {
		return err
	}
	if s.kind != "sqlite" {
		return nil
	}
	var stat4 int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'sqlite_stat4'").Scan(&stat4); err != nil {
		return err
	}
	if stat4 > 0 {
		if _, err := s.exec(ctx, "DELETE FROM sqlite_stat4"); err != nil {
			return err
		}
	}
	if _, err := s.exec(ctx, "ANALYZE sqlite_schema"); err != nil {
		return err
	}
	s.db.SetMaxIdleConns(0)
	s.db.SetMaxIdleConns(s.conns)
	return nil
}

// batch buffers rows of one table and inserts them with multi-row INSERTs
// of batchRows rows through a prepared statement.
type batch struct {
	s      *store
	table  string
	cols   []string
	full   string    // INSERT of batchRows rows
	stmt   *sql.Stmt // full, prepared on the seed's transaction
	args   []any
	report func(int)
}

const batchRows = 250

func (s *store) newBatch(table string, cols []string, report func(int)) *batch {
	return &batch{s: s, table: table, cols: cols, report: report,
		full: insertSQL(s.kind, table, cols, batchRows), args: make([]any, 0, len(cols)*batchRows)}
}

func insertSQL(kind, table string, cols []string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return rebind(kind, b.String())
}

func (b *batch) add(vals ...any) {
	if len(vals) != len(b.cols) {
		panic(fmt.Sprintf("seed %s: %d values for %d columns", b.table, len(vals), len(b.cols)))
	}
	b.args = append(b.args, vals...)
}

// flush inserts every buffered row inside tx.
func (b *batch) flush(ctx context.Context, tx *sql.Tx) error {
	per := len(b.cols) * batchRows
	for len(b.args) >= per {
		if b.stmt == nil {
			st, err := tx.PrepareContext(ctx, b.full)
			if err != nil {
				return fmt.Errorf("seed %s: %w", b.table, err)
			}
			b.stmt = st
		}
		if _, err := b.stmt.ExecContext(ctx, b.args[:per]...); err != nil {
			return fmt.Errorf("seed %s: %w", b.table, err)
		}
		b.report(batchRows)
		b.args = append(b.args[:0], b.args[per:]...)
	}
	if n := len(b.args) / len(b.cols); n > 0 {
		q := insertSQL(b.s.kind, b.table, b.cols, n)
		if _, err := tx.ExecContext(ctx, q, b.args...); err != nil {
			return fmt.Errorf("seed %s: %w", b.table, err)
		}
		b.report(n)
		b.args = b.args[:0]
	}
	return nil
}

// The five reads, as a service's data layer would write them: one
// statement per page, with the joins and aggregates the page shows, each
// in a form without and with its filter (the *_f variants). Limit and
// offset are always bound. Ties are broken by id, so a page is the same on
// every run and on both databases. The SQL is portable between SQLite and
// PostgreSQL (CASE instead of boolean sums, sums cast to BIGINT). The
// three reads that writes change also return their page's version (see
// versioned).
var readSQL = map[string]string{
	"tasks":           tasksSQL(""),
	"tasks_f":         tasksSQL("AND status = ?"),
	"conversations":   conversationsSQL(""),
	"conversations_f": conversationsSQL("AND c.active = 1"),
	"scripts":         scriptsSQL(""),
	"scripts_f":       scriptsSQL("WHERE s.status = ?"),
	"storyboards":     storyboardsSQL(""),
	"storyboards_f":   storyboardsSQL("WHERE b.status = ?"),
	"resources":       resourcesSQL(""),
	"resources_f":     resourcesSQL("WHERE r.type = ?"),
}

// versionedReads are the reads of readSQL written by versioned.
var versionedReads = map[string]bool{"tasks": true, "tasks_f": true, "conversations": true,
	"conversations_f": true, "scripts": true, "scripts_f": true}

// pageCol is a named column of a page query, with the value it takes on
// the row versioned adds to an empty page.
type pageCol struct{ name, zero string }

func numCol(name string) pageCol  { return pageCol{name, "0"} }
func textCol(name string) pageCol { return pageCol{name, "''"} }

// versioned wraps page, a query whose columns are named cols (the first
// "id"), into one statement that returns, before the page's columns, the
// version counter of what the page shows (column version of the owner
// table's row whose id is bound last) and a flag that is 1 on the page's
// rows. Both come from one statement, so the version is exactly that of
// the rows read. An empty page still gives one row, with the flag 0 and
// zero columns, so that an empty page has its version too. order is the
// page's order over cols (a derived table keeps no order).
func versioned(owner, version, page, order string, cols ...pageCol) string {
	var b strings.Builder
	b.WriteString("SELECT o." + version + ", CASE WHEN p.id IS NULL THEN 0 ELSE 1 END")
	for _, c := range cols {
		b.WriteString(", COALESCE(p." + c.name + ", " + c.zero + ")")
	}
	b.WriteString("\n\tFROM " + owner + " o LEFT JOIN (" + page + ") p ON 1 = 1\n\tWHERE o.id = ?\n\tORDER BY " + order)
	return b.String()
}

// tasksSQL is a user's tasks page: the page of tasks (newest first, with
// how many match for the pager) is cut first, through the (user_id,
// status, created_at) or (user_id, created_at) index, and only its rows
// get their per-task aggregates, each an indexed lookup on task_id.
func tasksSQL(filter string) string {
	page := `WITH page AS (
		SELECT id, title, status, priority, created_at, updated_at, COUNT(*) OVER () AS matching
		FROM tasks WHERE user_id = ? ` + filter + `
		ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?)
	SELECT p.id, p.title, p.status, p.priority, p.created_at, p.updated_at, p.matching,
		(SELECT COUNT(*) FROM scripts s WHERE s.task_id = p.id) AS script_count,
		(SELECT COALESCE(MAX(s.version), 0) FROM scripts s WHERE s.task_id = p.id AND s.status = 'final') AS final_version,
		(SELECT COUNT(*) FROM storyboards b WHERE b.task_id = p.id) AS storyboard_count,
		(SELECT COUNT(*) FROM storyboards b WHERE b.task_id = p.id AND b.status = 'approved') AS approved_scenes,
		(SELECT COUNT(*) FROM resources r WHERE r.task_id = p.id) AS resource_count,
		(SELECT CAST(COALESCE(SUM(r.size_bytes), 0) AS BIGINT) FROM resources r WHERE r.task_id = p.id) AS resource_bytes,
		(SELECT COALESCE(MAX(m.created_at), 0) FROM conversations c
			JOIN messages m ON m.conversation_id = c.id WHERE c.task_id = p.id) AS last_message_at
	FROM page p`
	return versioned("users", "tasks_version", page, "p.created_at DESC, p.id DESC",
		numCol("id"), textCol("title"), textCol("status"), numCol("priority"), numCol("created_at"), numCol("updated_at"), numCol("matching"),
		numCol("script_count"), numCol("final_version"), numCol("storyboard_count"), numCol("approved_scenes"), numCol("resource_count"),
		numCol("resource_bytes"), numCol("last_message_at"))
}

// conversationsSQL is a user's conversation list, most recently updated
// first, each with the task it is about, its message and unread counts
// and a preview of its last message.
func conversationsSQL(filter string) string {
	page := `SELECT c.id, c.title, c.active, c.updated_at, COALESCE(c.task_id, 0) AS task_id, COALESCE(t.title, '') AS task_title,
		(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count,
		(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id
			AND m.created_at > c.last_read_at AND m.role = 'assistant') AS unread_count,
		COALESCE(l.created_at, 0) AS last_message_at, COALESCE(l.role, '') AS last_role,
		COALESCE(substr(l.content, 1, ` + strconv.Itoa(previewChars) + `), '') AS last_message
	FROM conversations c
	LEFT JOIN tasks t ON t.id = c.task_id
	LEFT JOIN messages l ON l.id = (SELECT m.id FROM messages m WHERE m.conversation_id = c.id
		ORDER BY m.created_at DESC, m.id DESC LIMIT 1)
	WHERE c.user_id = ? ` + filter + `
	ORDER BY c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?`
	return versioned("users", "conversations_version", page, "p.updated_at DESC, p.id DESC",
		numCol("id"), textCol("title"), numCol("active"), numCol("updated_at"), numCol("task_id"), textCol("task_title"),
		numCol("message_count"), numCol("unread_count"), numCol("last_message_at"), textCol("last_role"), textCol("last_message"))
}

// scriptsSQL is a task's script versions, newest first, with the task, its
// owner, the task's version counts (taken over every version, before the
// status filter) and, per version, the scenes drawn from it and the
// resources generated for them.
func scriptsSQL(filter string) string {
	page := `SELECT s.id, s.version, s.status, s.content, length(s.content) AS chars, s.created_at, s.versions, s.finals,
		(SELECT COUNT(*) FROM storyboards b WHERE b.script_id = s.id) AS scenes,
		(SELECT COUNT(*) FROM storyboards b WHERE b.script_id = s.id AND b.status = 'approved') AS approved_scenes,
		(SELECT COUNT(*) FROM storyboards b JOIN resources r ON r.storyboard_id = b.id WHERE b.script_id = s.id) AS renders,
		t.title AS task_title, u.name AS owner
	FROM (SELECT id, task_id, version, status, content, created_at,
			COUNT(*) OVER () AS versions,
			SUM(CASE WHEN status = 'final' THEN 1 ELSE 0 END) OVER () AS finals
		FROM scripts WHERE task_id = ?) s
	JOIN tasks t ON t.id = s.task_id
	JOIN users u ON u.id = t.user_id
	` + filter + `
	ORDER BY s.created_at DESC, s.id DESC LIMIT ? OFFSET ?`
	return versioned("tasks", "scripts_version", page, "p.created_at DESC, p.id DESC",
		numCol("id"), numCol("version"), textCol("status"), textCol("content"), numCol("chars"), numCol("created_at"), numCol("versions"),
		numCol("finals"), numCol("scenes"), numCol("approved_scenes"), numCol("renders"), textCol("task_title"), textCol("owner"))
}

// storyboardsSQL is a task's storyboard scenes in scene order, with the
// task, its owner, the storyboard's progress (over every scene), and per
// scene the script version it was drawn from, the count and size of the
// resources generated for it and its newest generated image.
func storyboardsSQL(filter string) string {
	return `SELECT b.id, b.scene, b.status, b.description, b.image_url, b.created_at, b.scenes, b.approved, v.version,
		(SELECT COUNT(*) FROM resources r WHERE r.storyboard_id = b.id),
		(SELECT CAST(COALESCE(SUM(r.size_bytes), 0) AS BIGINT) FROM resources r WHERE r.storyboard_id = b.id),
		COALESCE((SELECT r.url FROM resources r WHERE r.storyboard_id = b.id AND r.type = 'image'
			ORDER BY r.created_at DESC, r.id DESC LIMIT 1), ''),
		t.title, u.name
	FROM (SELECT id, task_id, script_id, scene, status, description, image_url, created_at,
			COUNT(*) OVER () AS scenes,
			SUM(CASE WHEN status = 'approved' THEN 1 ELSE 0 END) OVER () AS approved
		FROM storyboards WHERE task_id = ?) b
	JOIN scripts v ON v.id = b.script_id
	JOIN tasks t ON t.id = b.task_id
	JOIN users u ON u.id = t.user_id
	` + filter + `
	ORDER BY b.scene, b.id LIMIT ? OFFSET ?`
}

// resourcesSQL is a task's resources, newest first, with the task, its
// owner, the scene each was generated for, and the count and total size
// of the task's resources by type and overall (over every type, before
// the type filter).
func resourcesSQL(filter string) string {
	return `SELECT r.id, r.type, r.url, r.size_bytes, r.created_at,
		r.type_count, r.type_bytes, r.total_bytes, COALESCE(b.scene, 0), COALESCE(b.description, ''), t.title, u.name
	FROM (SELECT id, task_id, storyboard_id, type, url, size_bytes, created_at,
			COUNT(*) OVER (PARTITION BY type) AS type_count,
			CAST(SUM(size_bytes) OVER (PARTITION BY type) AS BIGINT) AS type_bytes,
			CAST(SUM(size_bytes) OVER () AS BIGINT) AS total_bytes
		FROM resources WHERE task_id = ?) r
	LEFT JOIN storyboards b ON b.id = r.storyboard_id
	JOIN tasks t ON t.id = r.task_id
	JOIN users u ON u.id = t.user_id
	` + filter + `
	ORDER BY r.created_at DESC, r.id DESC LIMIT ? OFFSET ?`
}

// prepare prepares every read once, as a service's data layer would.
func (s *store) prepare(ctx context.Context) error {
	s.stmts = make(map[string]*sql.Stmt, len(readSQL))
	for name, q := range readSQL {
		st, err := s.db.PrepareContext(ctx, rebind(s.kind, q))
		if err != nil {
			return fmt.Errorf("prepare %s: %w", name, err)
		}
		s.stmts[name] = st
	}
	return nil
}

// roundTrip waits the simulated network round trip (-db-rtt) that a
// remote database would add to a statement, and records how long the wait
// really took (a timer can overshoot, most of all below a millisecond).
func (s *store) roundTrip(ctx context.Context) error {
	if s.rtt <= 0 {
		return nil
	}
	t0 := time.Now()
	t := time.NewTimer(s.rtt)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.rttWaited.Add(int64(time.Since(t0)))
	s.rttWaits.Add(1)
	return nil
}

// rttMean is the mean length of the simulated round trips so far.
func (s *store) rttMean() time.Duration {
	n := s.rttWaits.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(s.rttWaited.Load() / n)
}

// query runs the prepared read name, with its filter variant when filter
// is not empty (the filter is then bound after id), and scans each row
// with scan. A versioned read (see versioned) binds id once more, last,
// and scan gets the version and the row flag as prefix destinations: the
// page's version is taken from them and the flag's 0 row of an empty page
// is not a row.
func query[T any](ctx context.Context, s *store, name, filter string, id int64, limit, offset int, scan func(r *sql.Rows, v *T, prefix ...any) error) (Page[T], error) {
	args := []any{id, limit, offset}
	if filter != "" {
		name += "_f"
		args = []any{id, filter, limit, offset}
	}
	var prefix []any
	var version, isRow int64
	if versionedReads[name] {
		args = append(args, id)
		prefix = []any{&version, &isRow}
	}
	if err := s.roundTrip(ctx); err != nil {
		return Page[T]{}, err
	}
	rows, err := s.stmts[name].QueryContext(ctx, args...)
	if err != nil {
		return Page[T]{}, err
	}
	defer func() { _ = rows.Close() }()
	out := make([]T, 0, limit)
	for rows.Next() {
		var v T
		if err := scan(rows, &v, prefix...); err != nil {
			return Page[T]{}, err
		}
		if prefix == nil || isRow != 0 {
			out = append(out, v)
		}
	}
	return Page[T]{Version: version, Rows: out}, rows.Err()
}

// UserTasks returns a page of a user's tasks, newest first, with their
// per-task aggregates; status "" means any status.
func (s *store) UserTasks(ctx context.Context, userID int64, status string, limit, offset int) (Page[TaskRow], error) {
	return query(ctx, s, "tasks", status, userID, limit, offset, func(r *sql.Rows, t *TaskRow, prefix ...any) error {
		return r.Scan(append(prefix, &t.ID, &t.Title, &t.Status, &t.Priority, &t.CreatedAt, &t.UpdatedAt, &t.Matching,
			&t.ScriptCount, &t.FinalVersion, &t.StoryboardCount, &t.ApprovedScenes, &t.ResourceCount,
			&t.ResourceBytes, &t.LastMessageAt)...)
	})
}

// UserConversations returns a page of a user's conversations, most recently
// updated first, with their task, message and unread counts and last
// message.
func (s *store) UserConversations(ctx context.Context, userID int64, activeOnly bool, limit, offset int) (Page[ConversationRow], error) {
	name := "conversations"
	if activeOnly {
		name = "conversations_f"
	}
	return query(ctx, s, name, "", userID, limit, offset, func(r *sql.Rows, c *ConversationRow, prefix ...any) error {
		var active int64
		err := r.Scan(append(prefix, &c.ID, &c.Title, &active, &c.UpdatedAt, &c.TaskID, &c.TaskTitle, &c.MessageCount,
			&c.UnreadCount, &c.LastMessageAt, &c.LastRole, &c.LastMessage)...)
		c.Active = active != 0
		return err
	})
}

// TaskScripts returns a task's script versions, newest first; status ""
// means any status.
func (s *store) TaskScripts(ctx context.Context, taskID int64, status string, limit, offset int) (Page[ScriptRow], error) {
	return query(ctx, s, "scripts", status, taskID, limit, offset, func(r *sql.Rows, v *ScriptRow, prefix ...any) error {
		return r.Scan(append(prefix, &v.ID, &v.Version, &v.Status, &v.Content, &v.Chars, &v.CreatedAt, &v.Versions,
			&v.FinalVersions, &v.Scenes, &v.ApprovedScenes, &v.Renders, &v.TaskTitle, &v.Owner)...)
	})
}

// TaskStoryboards returns a task's storyboard scenes in scene order; status
// "" means any status.
func (s *store) TaskStoryboards(ctx context.Context, taskID int64, status string, limit, offset int) (Page[StoryboardRow], error) {
	return query(ctx, s, "storyboards", status, taskID, limit, offset, func(r *sql.Rows, v *StoryboardRow, prefix ...any) error {
		return r.Scan(append(prefix, &v.ID, &v.Scene, &v.Status, &v.Description, &v.ImageURL, &v.CreatedAt, &v.Scenes,
			&v.Approved, &v.ScriptVersion, &v.Renders, &v.RenderBytes, &v.LatestRender, &v.TaskTitle, &v.Owner)...)
	})
}

// TaskResources returns a task's resources, newest first; typ "" means any
// type.
func (s *store) TaskResources(ctx context.Context, taskID int64, typ string, limit, offset int) (Page[ResourceRow], error) {
	return query(ctx, s, "resources", typ, taskID, limit, offset, func(r *sql.Rows, v *ResourceRow, prefix ...any) error {
		return r.Scan(append(prefix, &v.ID, &v.Type, &v.URL, &v.SizeBytes, &v.CreatedAt, &v.TypeCount, &v.TypeBytes,
			&v.TotalBytes, &v.Scene, &v.SceneTitle, &v.TaskTitle, &v.Owner)...)
	})
}

// change is what a write changed: the owner of the rows it wrote (whose
// pages it made stale; 0 when it changed nothing) and the new value of
// each version counter it raised, 0 for those it left alone.
type change struct {
	User                 int64
	Task                 int64 // the task written, or a message's conversation is about; 0 if none
	TasksVersion         int64 // the owner's users.tasks_version
	ConversationsVersion int64 // the owner's users.conversations_version
	ScriptsVersion       int64 // the task's tasks.scripts_version
}

// inTx runs fn in one transaction. With -db-rtt it first waits
// roundTrips simulated round trips (BEGIN, the statements, COMMIT), all
// before BEGIN: waited inside, they would hold SQLite's database-wide
// write lock, where a server database would hold a few rows'. A write
// raises its version counters in its own transaction, so a read sees a
// page's rows and its version change together. The rows are locked in
// one order (scripts, tasks, conversations, then users), so PostgreSQL
// never finds two writes waiting on each other.
func (s *store) inTx(ctx context.Context, roundTrips int, fn func(tx *sql.Tx) error) error {
	for range roundTrips {
		if err := s.roundTrip(ctx); err != nil {
			return err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// SetTaskStatus changes a task's status and raises its owner's
// tasks_version: the owner's task pages are now stale. Four round trips.
func (s *store) SetTaskStatus(ctx context.Context, taskID int64, status string, now int64) (ch change, err error) {
	ch.Task = taskID
	err = s.inTx(ctx, 4, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, rebind(s.kind, `UPDATE tasks SET status = ?, updated_at = ? WHERE id = ? RETURNING user_id`),
			status, now, taskID).Scan(&ch.User); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, rebind(s.kind, `UPDATE users SET tasks_version = tasks_version + 1 WHERE id = ? RETURNING tasks_version`),
			ch.User).Scan(&ch.TasksVersion)
	})
	if err != nil {
		return change{}, err
	}
	return ch, nil
}

// SetLatestScriptStatus changes the status of a task's newest script
// version and raises the task's scripts_version and its owner's
// tasks_version: the task's script lists and the owner's task pages (their
// newest final version) are now stale. The change is zero when the task
// has no script. Five round trips.
func (s *store) SetLatestScriptStatus(ctx context.Context, taskID int64, status string) (ch change, err error) {
	ch.Task = taskID
	err = s.inTx(ctx, 5, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, rebind(s.kind, `UPDATE scripts SET status = ?
			WHERE task_id = ? AND version = (SELECT MAX(version) FROM scripts WHERE task_id = ?)
			RETURNING (SELECT user_id FROM tasks WHERE tasks.id = scripts.task_id)`),
			status, taskID, taskID).Scan(&ch.User)
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, rebind(s.kind, `UPDATE tasks SET scripts_version = scripts_version + 1 WHERE id = ? RETURNING scripts_version`),
			taskID).Scan(&ch.ScriptsVersion); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, rebind(s.kind, `UPDATE users SET tasks_version = tasks_version + 1 WHERE id = ? RETURNING tasks_version`),
			ch.User).Scan(&ch.TasksVersion)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return change{}, nil
	}
	if err != nil {
		return change{}, err
	}
	return ch, nil
}

// AddMessage appends a user's message to a conversation, marks it active,
// updated and read up to now, and raises its owner's conversations_version
// and, when the conversation is about a task (ch.Task), tasks_version: the
// owner's conversation lists are now stale, and so are their task pages
// (the task's latest message time) for a conversation about a task. Five
// round trips.
func (s *store) AddMessage(ctx context.Context, msgID, convID int64, content string, now int64) (ch change, err error) {
	err = s.inTx(ctx, 5, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, rebind(s.kind,
			`INSERT INTO messages (id, conversation_id, role, content, created_at) VALUES (?, ?, 'user', ?, ?)`),
			msgID, convID, content, now); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, rebind(s.kind, `UPDATE conversations SET active = 1, updated_at = ?, last_read_at = ?
			WHERE id = ? RETURNING user_id, COALESCE(task_id, 0)`),
			now, now, convID).Scan(&ch.User, &ch.Task); err != nil {
			return err
		}
		aboutTask := 0
		if ch.Task != 0 {
			aboutTask = 1
		}
		return tx.QueryRowContext(ctx, rebind(s.kind, `UPDATE users SET conversations_version = conversations_version + 1,
			tasks_version = tasks_version + ? WHERE id = ? RETURNING conversations_version, tasks_version`),
			aboutTask, ch.User).Scan(&ch.ConversationsVersion, &ch.TasksVersion)
	})
	if err != nil {
		return change{}, err
	}
	if ch.Task == 0 {
		ch.TasksVersion = 0 // not raised
	}
	return ch, nil
}

// maxID returns the largest id of table (0 when empty).
func (s *store) maxID(ctx context.Context, table string) (int64, error) {
	var n sql.NullInt64
	err := s.db.QueryRowContext(ctx, "SELECT MAX(id) FROM "+table).Scan(&n)
	return n.Int64, err
}
