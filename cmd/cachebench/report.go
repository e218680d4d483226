package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"strings"
	"time"

	"github.com/rediscache/rediscache"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Result is everything one benchmark run measured; -json prints it.
type Result struct {
	Config   RunConfig     `json:"config"`
	Database DatabaseInfo  `json:"database"`
	Redis    RedisInfo     `json:"redis"`
	Tiers    []TierResult  `json:"tiers"`             // in the order they ran
	Skipped  []SkippedTier `json:"skipped,omitempty"` // tiers the Redis could not serve
	// ElapsedSeconds is the whole run: start, seed, every tier, clean-up.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
}

// RunConfig is the configuration of a run.
type RunConfig struct {
	Scale           float64  `json:"scale"`
	Workers         int      `json:"workers"`
	DurationSeconds float64  `json:"duration_seconds,omitempty"` // per tier, when Ops is 0
	Ops             int64    `json:"ops,omitempty"`              // per tier
	Writes          float64  `json:"writes"`
	Zipf            float64  `json:"zipf"`
	Invalidate      string   `json:"invalidate"`
	Lease           bool     `json:"lease"`       // GetOrLoad's cross-process lease (Options.LockTTL) on
	Compression     string   `json:"compression"` // Options.Compression of the cache tiers: none or s2
	Tiers           []string `json:"tiers"`       // the tiers run
	WarmupSeconds   float64  `json:"warmup_seconds"`
	Seed            uint64   `json:"seed"`
	GOMAXPROCS      int      `json:"gomaxprocs"`
}

// DatabaseInfo describes the database and its seed.
type DatabaseInfo struct {
	Engine      string     `json:"engine"`
	InProcess   bool       `json:"in_process"` // SQLite: no network between the service and its database
	Rows        seedCounts `json:"rows"`
	TotalRows   int64      `json:"total_rows"`
	SeedSeconds float64    `json:"seed_seconds"`
	// SimulatedRTTMs is -db-rtt: the simulated network round trip waited
	// before every statement of the workload (0: none), and
	// SimulatedRTTMeanMs how long those waits really lasted on average.
	SimulatedRTTMs     float64 `json:"simulated_rtt_ms"`
	SimulatedRTTMeanMs float64 `json:"simulated_rtt_mean_ms,omitempty"`
}

// RedisInfo describes the Redis server.
type RedisInfo struct {
	Server   string `json:"server"`
	Embedded bool   `json:"embedded"` // miniredis: latencies are not Redis's
	Note     string `json:"note,omitempty"`
}

// SkippedTier is a tier the run left out, and why.
type SkippedTier struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Costs  string `json:"costs"`
	Reason string `json:"reason"`
}

// TierResult is what one tier measured.
type TierResult struct {
	ID       string        `json:"id"` // db, redis, local
	Name     string        `json:"name"`
	Costs    string        `json:"costs"` // what it costs and when it pays
	Phase    PhaseInfo     `json:"phase"`
	Queries  []QueryResult `json:"queries"`   // the five reads, then "writes"
	AllReads QueryResult   `json:"all_reads"` // the five reads together
	// StaleReads counts the reads answered with a page older than a write
	// that had finished before the read began; StaleBySource splits them by
	// GetOrLoad's Source; FirstStale describes one.
	StaleReads    uint64            `json:"stale_reads"`
	StaleBySource map[string]uint64 `json:"stale_by_source,omitempty"`
	FirstStale    string            `json:"first_stale,omitempty"`
	Redis         *TierRedis        `json:"redis,omitempty"`      // cache tiers
	Library       *LibraryStats     `json:"rediscache,omitempty"` // cache tiers: the Client's Stats() after the phase
}

// TierRedis is what a cache tier used of Redis.
type TierRedis struct {
	// UsedMemory* are INFO memory after the measured phase (whole server);
	// UsedMemoryAddedBytes is the growth since before the tier's warm-up.
	UsedMemoryBytes      int64  `json:"used_memory_bytes,omitempty"`
	UsedMemoryHuman      string `json:"used_memory_human,omitempty"`
	UsedMemoryAddedBytes int64  `json:"used_memory_added_bytes,omitempty"`
	Keys                 int64  `json:"keys"` // keys the cache held at the end
}

// Latency is one query type's figures in one tier.
type Latency struct {
	Count     uint64  `json:"count"`
	Errors    uint64  `json:"errors"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MeanMs    float64 `json:"mean_ms"`
	MaxMs     float64 `json:"max_ms"`
	ReqPerSec float64 `json:"req_per_sec"`
}

// QueryResult is one query type in one tier.
type QueryResult struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	Latency Latency `json:"latency"`
	// Hit and Miss split a cache tier's reads into those the cache
	// answered and those that went on to the database.
	Hit  *Latency `json:"hit,omitempty"`
	Miss *Latency `json:"miss,omitempty"`
	// SpeedupP50 and SpeedupP99 are the database tier's latency over this
	// one's (0 for the database tier itself, and without one).
	SpeedupP50 float64 `json:"speedup_p50"`
	SpeedupP99 float64 `json:"speedup_p99"`
	// For reads: the share of requests the cache answered, the database
	// queries the tier ran (loader calls; every read for the database
	// alone), the queries it saved (requests minus loader calls), and the
	// stale reads.
	HitRate         float64 `json:"hit_rate"`
	DBQueries       uint64  `json:"db_queries"`
	DBQueriesSaved  uint64  `json:"db_queries_saved"`
	DBQueriesSavedR float64 `json:"db_queries_saved_ratio"`
	StaleReads      uint64  `json:"stale_reads"`
}

// PhaseInfo is one measured phase's totals.
type PhaseInfo struct {
	Seconds    float64 `json:"seconds"`
	Ops        uint64  `json:"ops"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	Errors     uint64  `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
}

// LibraryStats are the rediscache Client's counters.
type LibraryStats struct {
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	HitRate float64 `json:"hit_rate"`
	Loads   uint64  `json:"loads"`
	Sets    uint64  `json:"sets"`
	Deletes uint64  `json:"deletes"`
	Errors  uint64  `json:"errors"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func latencyOf(h *hist, errs uint64, elapsed time.Duration) Latency {
	l := Latency{Count: h.n, Errors: errs, P50Ms: ms(h.quantile(0.50)), P99Ms: ms(h.quantile(0.99)),
		MeanMs: ms(h.mean()), MaxMs: ms(h.max)}
	if elapsed > 0 {
		l.ReqPerSec = float64(h.n) / elapsed.Seconds()
	}
	return l
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func phaseInfo(p *phaseStats) PhaseInfo {
	pi := PhaseInfo{Seconds: p.Elapsed.Seconds(), Ops: p.ops()}
	pi.OpsPerSec = ratio(float64(pi.Ops), pi.Seconds)
	for _, e := range p.Errors {
		pi.Errors += e
	}
	if p.FirstErr != nil {
		pi.FirstError = p.FirstErr.Error()
	}
	return pi
}

// tierResult builds tier t's figures from its measured phase and, for a
// cache tier, its loader calls per kind (nil for the database alone, where
// every read is a query).
func tierResult(t tier, p *phaseStats, loads *[numKinds]uint64) TierResult {
	tr := TierResult{ID: t.ID, Name: t.Name, Costs: t.Costs, Phase: phaseInfo(p), StaleReads: p.staleReads()}
	var all phaseStats // the five reads merged into slot 0
	var allLoads uint64
	for k := range numKinds {
		dbq := p.Lat[k].n
		if loads != nil {
			dbq = loads[k]
		}
		tr.Queries = append(tr.Queries, queryResult(kindIDs[k], kindNames[k], p, k, dbq, loads != nil))
		if k != KindWrite {
			all.Lat[0].merge(&p.Lat[k])
			all.HitLat[0].merge(&p.HitLat[k])
			all.MissLat[0].merge(&p.MissLat[k])
			all.Hits[0] += p.Hits[k]
			all.Errors[0] += p.Errors[k]
			all.Stale[0] += p.Stale[k]
			allLoads += dbq
		}
	}
	all.Elapsed = p.Elapsed
	tr.AllReads = queryResult("all_reads", "all reads", &all, 0, allLoads, loads != nil)
	for src, n := range p.StaleBy {
		if n > 0 {
			if tr.StaleBySource == nil {
				tr.StaleBySource = map[string]uint64{}
			}
			name := "database"
			if src != 0 {
				name = rediscache.Source(src).String()
			}
			tr.StaleBySource[name] = n
		}
	}
	if p.FirstStale != nil {
		tr.FirstStale = p.FirstStale.String()
	}
	return tr
}

// queryResult is kind k of p (a read unless k is KindWrite; slot 0 of a
// merged phaseStats for "all reads"), which ran dbq database queries.
func queryResult(id, name string, p *phaseStats, k Kind, dbq uint64, cached bool) QueryResult {
	q := QueryResult{ID: id, Name: name, Latency: latencyOf(&p.Lat[k], p.Errors[k], p.Elapsed)}
	if id == kindIDs[KindWrite] {
		return q
	}
	n := p.Lat[k].n
	if cached {
		h, m := latencyOf(&p.HitLat[k], 0, p.Elapsed), latencyOf(&p.MissLat[k], 0, p.Elapsed)
		q.Hit, q.Miss = &h, &m
		q.HitRate = ratio(float64(p.Hits[k]), float64(n))
	}
	q.DBQueries = dbq
	if n > dbq {
		q.DBQueriesSaved = n - dbq
	}
	q.DBQueriesSavedR = ratio(float64(q.DBQueriesSaved), float64(n))
	q.StaleReads = p.Stale[k]
	return q
}

// compareToDatabase fills every other tier's speed-ups over the database
// tier, when there is one.
func (r *Result) compareToDatabase() {
	var db *TierResult
	for i := range r.Tiers {
		if r.Tiers[i].ID == "db" {
			db = &r.Tiers[i]
		}
	}
	if db == nil {
		return
	}
	speedup := func(q *QueryResult, base QueryResult) {
		q.SpeedupP50 = ratio(base.Latency.P50Ms, q.Latency.P50Ms)
		q.SpeedupP99 = ratio(base.Latency.P99Ms, q.Latency.P99Ms)
	}
	for i := range r.Tiers {
		t := &r.Tiers[i]
		if t == db {
			continue
		}
		for j := range t.Queries {
			speedup(&t.Queries[j], db.Queries[j])
		}
		speedup(&t.AllReads, db.AllReads)
	}
}

// fmtDur prints a latency in milliseconds with a readable precision.
func fmtDur(msv float64) string {
	switch {
	case msv == 0:
		return "-"
	case msv < 1:
		return fmt.Sprintf("%.0fµs", msv*1000)
	case msv < 10:
		return fmt.Sprintf("%.2fms", msv)
	case msv < 100:
		return fmt.Sprintf("%.1fms", msv)
	}
	return fmt.Sprintf("%.0fms", msv)
}

// fmtInt prints n with thousands separators.
func fmtInt(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func fmtRate(r float64) string { return fmtInt(uint64(math.Round(r))) }

func fmtSpeedup(x float64) string {
	if x == 0 {
		return "-"
	}
	if x < 10 {
		return fmt.Sprintf("%.2fx", x)
	}
	return fmt.Sprintf("%.0fx", x)
}

// writeTable prints the human-readable report: a header naming what ran
// and what each tier costs, one table with a line per query and tier, and
// per cache tier its Redis memory, hit/miss split and Stats.
func writeTable(w io.Writer, r *Result) error {
	var b strings.Builder
	writeHeader(&b, r)

	header := []string{"query", "tier", "p50", "p99", "speed-up p50", "speed-up p99", "req/s", "hit rate",
		"DB queries saved", "stale reads"}
	line := func(name string, t TierResult, q QueryResult, read bool) []string {
		hit, saved, stale := "-", "-", "-"
		if read {
			stale = fmtInt(q.StaleReads)
			if t.Library != nil {
				hit = fmt.Sprintf("%.1f%%", q.HitRate*100)
				saved = fmt.Sprintf("%s (%.0f%%)", fmtInt(q.DBQueriesSaved), q.DBQueriesSavedR*100)
			}
		}
		return []string{name, t.Name, fmtDur(q.Latency.P50Ms), fmtDur(q.Latency.P99Ms), fmtSpeedup(q.SpeedupP50),
			fmtSpeedup(q.SpeedupP99), fmtRate(q.Latency.ReqPerSec), hit, saved, stale}
	}
	group := func(name string, pick func(TierResult) QueryResult, read bool) (rows [][]string) {
		for i, t := range r.Tiers {
			if i > 0 {
				name = ""
			}
			rows = append(rows, line(name, t, pick(t), read))
		}
		return rows
	}
	rows := [][]string{header, nil}
	for k := range numReads {
		if k > 0 {
			rows = append(rows, []string{})
		}
		rows = append(rows, group(kindNames[k], func(t TierResult) QueryResult { return t.Queries[k] }, true)...)
	}
	rows = append(rows, nil)
	rows = append(rows, group("all reads", func(t TierResult) QueryResult { return t.AllReads }, true)...)
	if r.Config.Writes > 0 {
		rows = append(rows, []string{})
		rows = append(rows, group("writes (+invalidation)", func(t TierResult) QueryResult { return t.Queries[KindWrite] }, false)...)
	}
	rows = append(rows, nil)
	for i, t := range r.Tiers {
		name := ""
		if i == 0 {
			name = "all operations"
		}
		rows = append(rows, []string{name, t.Name, "", "", "", "", fmtRate(t.Phase.OpsPerSec), "", "", fmtInt(t.StaleReads)})
	}
	renderTable(&b, rows, 2)
	b.WriteString("\n")
	for _, t := range r.Tiers {
		writeTierNotes(&b, t)
	}
	if r.Redis.Note != "" {
		fmt.Fprintf(&b, "NOTE: %s\n", r.Redis.Note)
	}
	fmt.Fprintf(&b, "elapsed: %.1fs in total (seeding %.1fs)\n", r.ElapsedSeconds, r.Database.SeedSeconds)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHeader prints what ran: the database, the Redis, the workload, and
// one line per tier saying what it costs and when it pays.
func writeHeader(b *strings.Builder, r *Result) {
	per := "tier"
	dur := fmt.Sprintf("%gs per %s", r.Config.DurationSeconds, per)
	if r.Config.Ops > 0 {
		dur = fmt.Sprintf("%s ops per %s", fmtInt(uint64(r.Config.Ops)), per)
	}
	fmt.Fprintf(b, "cachebench: %s\n", r.Database.Engine)
	fmt.Fprintf(b, "  %s rows (%s users, %s tasks), seeded in %.1fs\n", fmtInt(uint64(r.Database.TotalRows)),
		fmtInt(uint64(r.Database.Rows.Users)), fmtInt(uint64(r.Database.Rows.Tasks)), r.Database.SeedSeconds)
	switch {
	case r.Database.SimulatedRTTMs > 0:
		fmt.Fprintf(b, "  database round trip: SIMULATED, -db-rtt %s waited before every statement (measured mean %s), standing for a network\n",
			fmtDur(r.Database.SimulatedRTTMs), fmtDur(r.Database.SimulatedRTTMeanMs))
	case r.Database.InProcess:
		b.WriteString("  database round trip: none, the database is in-process (-db-rtt simulates a network one)\n")
	}
	if r.Redis.Server != "" {
		fmt.Fprintf(b, "  Redis: %s\n", r.Redis.Server)
	}
	lease := "on"
	if !r.Config.Lease {
		lease = "off"
	}
	warm := fmt.Sprintf("after a %gs warm-up each", r.Config.WarmupSeconds)
	if r.Config.WarmupSeconds == 0 {
		warm = "no warm-up"
	}
	comp := r.Config.Compression
	if comp == "" {
		comp = "none"
	}
	fmt.Fprintf(b, "  %d workers, %s %s, %.0f%% writes (invalidate: %s), zipf s=%g, lease %s, compression %s, GOMAXPROCS=%d\n",
		r.Config.Workers, dur, warm, r.Config.Writes*100, r.Config.Invalidate, r.Config.Zipf, lease, comp, r.Config.GOMAXPROCS)
	b.WriteString("  tiers, on the same request sequences (a cache tier on keys of its own, cleared when it ends):\n")
	width := 0
	for _, t := range r.Tiers {
		width = max(width, len(t.Name))
	}
	for _, t := range r.Skipped {
		width = max(width, len(t.Name))
	}
	for _, t := range r.Tiers {
		fmt.Fprintf(b, "    %-*s  %s\n", width, t.Name, t.Costs)
	}
	for _, t := range r.Skipped {
		fmt.Fprintf(b, "    %-*s  SKIPPED: %s\n", width, t.Name, t.Reason)
	}
	b.WriteString("  speed-up: the database alone's latency over the tier's\n" +
		"  stale read: a page older than a write that had finished (committed, then invalidated) before the read began;\n" +
		"  the database alone is checked the same way, as a control\n\n")
}

// writeTierNotes prints a cache tier's Redis memory, hit/miss split and
// Stats, and any tier's stale reads and errors.
func writeTierNotes(b *strings.Builder, t TierResult) {
	if rd := t.Redis; rd != nil {
		mem := "n/a (the server has no INFO memory, as miniredis)"
		if rd.UsedMemoryHuman != "" {
			mem = fmt.Sprintf("%s used_memory_human (+%s bytes during the tier)", rd.UsedMemoryHuman,
				fmtInt(uint64(max(rd.UsedMemoryAddedBytes, 0))))
		}
		fmt.Fprintf(b, "%s: Redis memory %s, %s cached keys\n", t.Name, mem, fmtInt(uint64(rd.Keys)))
	}
	if h, m := t.AllReads.Hit, t.AllReads.Miss; h != nil && m != nil {
		fmt.Fprintf(b, "%s: reads split: %s hits p50 %s p99 %s; %s misses (the cache, then the database, then Redis) p50 %s p99 %s\n",
			t.Name, fmtInt(h.Count), fmtDur(h.P50Ms), fmtDur(h.P99Ms), fmtInt(m.Count), fmtDur(m.P50Ms), fmtDur(m.P99Ms))
	}
	if l := t.Library; l != nil {
		fmt.Fprintf(b, "%s: rediscache Stats: %s hits, %s misses (hit rate %.1f%%), %s loads, %s sets, %s deletes, %s errors\n",
			t.Name, fmtInt(l.Hits), fmtInt(l.Misses), l.HitRate*100, fmtInt(l.Loads), fmtInt(l.Sets), fmtInt(l.Deletes), fmtInt(l.Errors))
	}
	if t.StaleReads > 0 {
		var by []string
		for _, src := range []string{"database", "hit", "stale", "loaded", "fallback"} {
			if n := t.StaleBySource[src]; n > 0 {
				by = append(by, fmt.Sprintf("%s %s", src, fmtInt(n)))
			}
		}
		fmt.Fprintf(b, "%s: STALE READS: %s (by GetOrLoad source: %s); one: %s\n", t.Name, fmtInt(t.StaleReads),
			strings.Join(by, ", "), t.FirstStale)
	}
	if t.Phase.Errors > 0 {
		fmt.Fprintf(b, "%s: ERRORS: %d (first: %s)\n", t.Name, t.Phase.Errors, t.Phase.FirstError)
	}
}

// renderTable aligns rows: the first left columns left, the others right;
// a nil row is a rule, an empty one a blank line.
func renderTable(b *strings.Builder, rows [][]string, left int) {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	total := 0
	for _, w := range width {
		total += w + 2
	}
	for _, r := range rows {
		if r == nil {
			b.WriteString(strings.Repeat("-", total-2) + "\n")
			continue
		}
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 {
				line.WriteString("  ")
			}
			if i < left {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// writeJSON prints r as indented JSON.
func writeJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// chartColors are the bar colours per tier: reds for the database alone,
// blues for Redis, greens for the near cache; the lighter shade is p50,
// the darker p99.
var chartColors = map[string][2]color.RGBA{
	"db":    {{R: 244, G: 165, B: 130, A: 255}, {R: 202, G: 0, B: 32, A: 255}},
	"redis": {{R: 146, G: 197, B: 222, A: 255}, {R: 5, G: 113, B: 176, A: 255}},
	"local": {{R: 166, G: 219, B: 160, A: 255}, {R: 0, G: 136, B: 55, A: 255}},
}

// writeChart draws the p50 and p99 latency of every read in every tier,
// as grouped bars on a logarithmic axis (they differ by orders of
// magnitude), each bar labelled with its value, and saves it as a PNG.
func writeChart(file string, r *Result) error {
	type series struct {
		label  string
		color  color.RGBA
		values []float64
	}
	var all []series
	for _, t := range r.Tiers {
		p50 := series{label: t.Name + " p50", color: chartColors[t.ID][0]}
		p99 := series{label: t.Name + " p99", color: chartColors[t.ID][1]}
		for _, q := range t.Queries[:numReads] {
			p50.values = append(p50.values, q.Latency.P50Ms)
			p99.values = append(p99.values, q.Latency.P99Ms)
		}
		all = append(all, p50, p99)
	}
	p := plot.New()
	redis := "Redis"
	if r.Redis.Embedded {
		redis = "embedded miniredis (not Redis latency)"
	}
	engine, _, _ := strings.Cut(r.Database.Engine, " (")
	if r.Database.SimulatedRTTMs > 0 {
		engine += fmt.Sprintf(" + simulated %s round trip", fmtDur(r.Database.SimulatedRTTMs))
	}
	p.Title.Text = fmt.Sprintf("cachebench: latency per query and tier, %s, rediscache GetOrLoad on %s", engine, redis)
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)
	p.Add(plotter.NewGrid())

	names := kindNames[:numReads]
	lo, hi := math.Inf(1), 0.0
	for _, s := range all {
		for _, v := range s.values {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		lo, hi = 0.001, 1
	}
	floor := math.Pow10(int(math.Floor(math.Log10(lo / 1.5))))
	width := 0.8 / float64(max(len(all), 1))
	for i, s := range all {
		bars := &logBars{floor: floor, color: s.color, width: width, values: s.values,
			offset: (float64(i) - float64(len(all)-1)/2) * width}
		p.Add(bars)
		p.Legend.Add(s.label, bars)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Min, p.Y.Max = floor, hi*4 // room for the labels and the legend
	return p.Save(12*vg.Inch, 5.5*vg.Inch, file)
}

// logBars is one series of a grouped bar chart that, unlike
// plotter.BarChart, works on a log axis: bars rise from floor, not 0.
type logBars struct {
	values []float64
	floor  float64
	color  color.Color
	width  float64 // in category units
	offset float64 // of this series' bars from the category centre
}

// Plot draws the bars and their value labels.
func (b *logBars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	sty := text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(7)),
		Handler: plot.DefaultTextHandler, XAlign: draw.XCenter, YAlign: draw.YBottom}
	for i, v := range b.values {
		if v <= 0 {
			continue
		}
		x := float64(i) + b.offset
		x0, x1 := trX(x-b.width/2), trX(x+b.width/2)
		y0, y1 := trY(b.floor), trY(v)
		poly := c.ClipPolygonY([]vg.Point{{X: x0, Y: y0}, {X: x0, Y: y1}, {X: x1, Y: y1}, {X: x1, Y: y0}})
		c.FillPolygon(b.color, poly)
		c.FillText(sty, vg.Point{X: trX(x), Y: y1 + vg.Points(1)}, fmtDur(v))
	}
}

// DataRange implements plot.DataRanger.
func (b *logBars) DataRange() (xmin, xmax, ymin, ymax float64) {
	ymin, ymax = b.floor, b.floor
	for _, v := range b.values {
		ymax = math.Max(ymax, v)
	}
	return -0.5, float64(len(b.values)) - 0.5, ymin, ymax
}

// Thumbnail implements plot.Thumbnailer for the legend.
func (b *logBars) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(b.color, []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y},
		{X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y}})
}
