package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"strings"
	"time"

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
	Queries  []QueryResult `json:"queries"`    // the five reads, then "writes"
	AllReads QueryResult   `json:"all_reads"`  // the five reads together
	Uncached PhaseInfo     `json:"uncached"`   // the database-only phase
	Cached   PhaseInfo     `json:"cached"`     // the GetOrLoad phase
	Library  LibraryStats  `json:"rediscache"` // the Client's own Stats() after the cached phase
}

// RunConfig is the configuration of a run.
type RunConfig struct {
	Scale           float64 `json:"scale"`
	Workers         int     `json:"workers"`
	DurationSeconds float64 `json:"duration_seconds,omitempty"` // per phase, when Ops is 0
	Ops             int64   `json:"ops,omitempty"`              // per phase
	Writes          float64 `json:"writes"`
	Zipf            float64 `json:"zipf"`
	Invalidate      string  `json:"invalidate"`
	Lease           bool    `json:"lease"`       // GetOrLoad's cross-process lease (Options.LockTTL) on
	LocalCache      bool    `json:"local_cache"` // Options.LocalCache on
	WarmupSeconds   float64 `json:"warmup_seconds"`
	Seed            uint64  `json:"seed"`
	GOMAXPROCS      int     `json:"gomaxprocs"`
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

// RedisInfo describes the Redis server and what the cache used of it.
type RedisInfo struct {
	Server   string `json:"server"`
	Embedded bool   `json:"embedded"` // miniredis: latencies are not Redis's
	// UsedMemory* are INFO memory after the cached phase (whole server);
	// UsedMemoryAddedBytes is the growth during the cached phase.
	UsedMemoryBytes      int64  `json:"used_memory_bytes,omitempty"`
	UsedMemoryHuman      string `json:"used_memory_human,omitempty"`
	UsedMemoryAddedBytes int64  `json:"used_memory_added_bytes,omitempty"`
	Keys                 int64  `json:"keys"` // keys the cache holds at the end
	Note                 string `json:"note,omitempty"`
}

// Latency is one query type's figures in one phase.
type Latency struct {
	Count     uint64  `json:"count"`
	Errors    uint64  `json:"errors"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MeanMs    float64 `json:"mean_ms"`
	MaxMs     float64 `json:"max_ms"`
	ReqPerSec float64 `json:"req_per_sec"`
}

// QueryResult compares one query type uncached and cached.
type QueryResult struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Uncached Latency `json:"uncached"`
	Cached   Latency `json:"cached"`
	// CachedHit and CachedMiss split the cached reads into those Redis
	// answered and those that went on to the database (reads only).
	CachedHit  *Latency `json:"cached_hit,omitempty"`
	CachedMiss *Latency `json:"cached_miss,omitempty"`
	SpeedupP50 float64  `json:"speedup_p50"` // uncached p50 / cached p50
	SpeedupP99 float64  `json:"speedup_p99"`
	// For reads: the share of cached-phase requests Redis answered, the
	// database queries the cached phase still ran (loader calls), and the
	// queries it saved (requests minus loader calls).
	HitRate         float64 `json:"hit_rate"`
	DBQueries       uint64  `json:"db_queries"`
	DBQueriesSaved  uint64  `json:"db_queries_saved"`
	DBQueriesSavedR float64 `json:"db_queries_saved_ratio"`
}

// PhaseInfo is one phase's totals.
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

// compare builds the per-query rows of a Result from the two phases and
// the cached phase's loader calls.
func compare(unc, cac *phaseStats, loads *[numKinds]uint64) (rows []QueryResult, all QueryResult) {
	row := func(id, name string, hu, hc, hh, hm *hist, eu, ec, hits, dbq uint64, read bool) QueryResult {
		q := QueryResult{ID: id, Name: name,
			Uncached: latencyOf(hu, eu, unc.Elapsed), Cached: latencyOf(hc, ec, cac.Elapsed)}
		if read {
			h, m := latencyOf(hh, 0, cac.Elapsed), latencyOf(hm, 0, cac.Elapsed)
			q.CachedHit, q.CachedMiss = &h, &m
		}
		q.SpeedupP50 = ratio(q.Uncached.P50Ms, q.Cached.P50Ms)
		q.SpeedupP99 = ratio(q.Uncached.P99Ms, q.Cached.P99Ms)
		if read {
			q.HitRate = ratio(float64(hits), float64(hc.n))
			q.DBQueries = dbq
			if hc.n > dbq {
				q.DBQueriesSaved = hc.n - dbq
			}
			q.DBQueriesSavedR = ratio(float64(q.DBQueriesSaved), float64(hc.n))
		}
		return q
	}
	var au, ac, ah, am hist
	var eu, ec, hits, dbq uint64
	for k := range numKinds {
		read := k != KindWrite
		rows = append(rows, row(kindIDs[k], kindNames[k], &unc.Lat[k], &cac.Lat[k], &cac.HitLat[k], &cac.MissLat[k],
			unc.Errors[k], cac.Errors[k], cac.Hits[k], loads[k], read))
		if read {
			au.merge(&unc.Lat[k])
			ac.merge(&cac.Lat[k])
			ah.merge(&cac.HitLat[k])
			am.merge(&cac.MissLat[k])
			eu += unc.Errors[k]
			ec += cac.Errors[k]
			hits += cac.Hits[k]
			dbq += loads[k]
		}
	}
	return rows, row("all_reads", "all reads", &au, &ac, &ah, &am, eu, ec, hits, dbq, true)
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

// writeTable prints the human-readable report: a header naming what ran,
// one table, and the Redis memory line.
func writeTable(w io.Writer, r *Result) error {
	var b strings.Builder
	dur := fmt.Sprintf("%gs per phase", r.Config.DurationSeconds)
	if r.Config.Ops > 0 {
		dur = fmt.Sprintf("%s ops per phase", fmtInt(uint64(r.Config.Ops)))
	}
	fmt.Fprintf(&b, "cachebench: %s\n", r.Database.Engine)
	fmt.Fprintf(&b, "  %s rows (%s users, %s tasks), seeded in %.1fs\n", fmtInt(uint64(r.Database.TotalRows)),
		fmtInt(uint64(r.Database.Rows.Users)), fmtInt(uint64(r.Database.Rows.Tasks)), r.Database.SeedSeconds)
	switch {
	case r.Database.SimulatedRTTMs > 0:
		fmt.Fprintf(&b, "  database round trip: SIMULATED, -db-rtt %s waited before every statement (measured mean %s), standing for a network\n",
			fmtDur(r.Database.SimulatedRTTMs), fmtDur(r.Database.SimulatedRTTMeanMs))
	case r.Database.InProcess:
		b.WriteString("  database round trip: none, the database is in-process (-db-rtt simulates a network one)\n")
	}
	near := ""
	if r.Config.LocalCache {
		near = ", near cache on (Options.LocalCache)"
	}
	fmt.Fprintf(&b, "  cache: rediscache GetOrLoad on %s%s\n", r.Redis.Server, near)
	lease := "on"
	if !r.Config.Lease {
		lease = "off"
	}
	warm := fmt.Sprintf("after %gs warm-up", r.Config.WarmupSeconds)
	if r.Config.WarmupSeconds == 0 {
		warm = "no warm-up"
	}
	fmt.Fprintf(&b, "  %d workers, %s %s, %.0f%% writes (invalidate: %s), zipf s=%g, lease %s, GOMAXPROCS=%d\n\n",
		r.Config.Workers, dur, warm, r.Config.Writes*100, r.Config.Invalidate, r.Config.Zipf, lease, r.Config.GOMAXPROCS)

	header := []string{"query", "p50 uncached", "p99 uncached", "p50 cached", "p99 cached", "speed-up p50",
		"speed-up p99", "req/s uncached", "req/s cached", "hit rate", "DB queries saved"}
	line := func(q QueryResult, read bool) []string {
		hit, saved := "-", "-"
		if read {
			hit = fmt.Sprintf("%.1f%%", q.HitRate*100)
			saved = fmt.Sprintf("%s (%.0f%%)", fmtInt(q.DBQueriesSaved), q.DBQueriesSavedR*100)
		}
		return []string{q.Name, fmtDur(q.Uncached.P50Ms), fmtDur(q.Uncached.P99Ms), fmtDur(q.Cached.P50Ms),
			fmtDur(q.Cached.P99Ms), fmtSpeedup(q.SpeedupP50), fmtSpeedup(q.SpeedupP99),
			fmtRate(q.Uncached.ReqPerSec), fmtRate(q.Cached.ReqPerSec), hit, saved}
	}
	rows := [][]string{header, nil}
	for _, q := range r.Queries {
		if q.ID == kindIDs[KindWrite] {
			continue
		}
		rows = append(rows, line(q, true))
	}
	rows = append(rows, nil, line(r.AllReads, true))
	for _, q := range r.Queries {
		if q.ID == kindIDs[KindWrite] && q.Uncached.Count+q.Cached.Count > 0 {
			w := line(q, false)
			w[0] = "writes (+invalidation)"
			rows = append(rows, w)
		}
	}
	rows = append(rows, nil, []string{"all operations", "", "", "", "", "", "",
		fmtRate(r.Uncached.OpsPerSec), fmtRate(r.Cached.OpsPerSec), "", ""})
	renderTable(&b, rows)

	mem := "n/a (the server has no INFO memory, as miniredis)"
	if r.Redis.UsedMemoryHuman != "" {
		mem = fmt.Sprintf("%s used_memory_human (%s bytes; +%s during the cached phase)", r.Redis.UsedMemoryHuman,
			fmtInt(uint64(r.Redis.UsedMemoryBytes)), fmtInt(uint64(max(r.Redis.UsedMemoryAddedBytes, 0))))
	}
	fmt.Fprintf(&b, "\nRedis memory used: %s, %s cached keys\n", mem, fmtInt(uint64(r.Redis.Keys)))
	if h, m := r.AllReads.CachedHit, r.AllReads.CachedMiss; h != nil && m != nil {
		fmt.Fprintf(&b, "cached reads split: %s hits p50 %s p99 %s; %s misses (Redis, then the database, then Redis) p50 %s p99 %s\n",
			fmtInt(h.Count), fmtDur(h.P50Ms), fmtDur(h.P99Ms), fmtInt(m.Count), fmtDur(m.P50Ms), fmtDur(m.P99Ms))
	}
	fmt.Fprintf(&b, "rediscache Stats: %s hits, %s misses (hit rate %.1f%%), %s loads, %s sets, %s deletes, %s errors\n",
		fmtInt(r.Library.Hits), fmtInt(r.Library.Misses), r.Library.HitRate*100, fmtInt(r.Library.Loads),
		fmtInt(r.Library.Sets), fmtInt(r.Library.Deletes), fmtInt(r.Library.Errors))
	if r.Redis.Note != "" {
		fmt.Fprintf(&b, "NOTE: %s\n", r.Redis.Note)
	}
	for _, p := range []struct {
		name string
		p    PhaseInfo
	}{{"uncached", r.Uncached}, {"cached", r.Cached}} {
		if p.p.Errors > 0 {
			fmt.Fprintf(&b, "ERRORS in the %s phase: %d (first: %s)\n", p.name, p.p.Errors, p.p.FirstError)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// renderTable aligns rows: the first column left, the others right; a nil
// row is a rule.
func renderTable(b *strings.Builder, rows [][]string) {
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
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			switch {
			case i == 0:
				b.WriteString(c + pad)
			default:
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteString("\n")
	}
}

// writeJSON prints r as indented JSON.
func writeJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Chart colours: reds for the database alone, blues for the cache; the
// lighter shade is p50, the darker p99.
var chartSeries = []struct {
	label string
	color color.RGBA
	value func(q QueryResult) float64
}{
	{"uncached p50", color.RGBA{R: 244, G: 165, B: 130, A: 255}, func(q QueryResult) float64 { return q.Uncached.P50Ms }},
	{"uncached p99", color.RGBA{R: 202, G: 0, B: 32, A: 255}, func(q QueryResult) float64 { return q.Uncached.P99Ms }},
	{"cached p50", color.RGBA{R: 146, G: 197, B: 222, A: 255}, func(q QueryResult) float64 { return q.Cached.P50Ms }},
	{"cached p99", color.RGBA{R: 5, G: 113, B: 176, A: 255}, func(q QueryResult) float64 { return q.Cached.P99Ms }},
}

// writeChart draws the p50 and p99 latency of every read, uncached and
// cached, as grouped bars on a logarithmic axis (the two differ by orders
// of magnitude), each bar labelled with its value, and saves it as a PNG.
func writeChart(file string, r *Result) error {
	var reads []QueryResult
	for _, q := range r.Queries {
		if q.ID != kindIDs[KindWrite] {
			reads = append(reads, q)
		}
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
	p.Title.Text = fmt.Sprintf("cachebench: latency per query, %s alone vs rediscache GetOrLoad on %s", engine, redis)
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)
	p.Add(plotter.NewGrid())

	names := make([]string, len(reads))
	for i, q := range reads {
		names[i] = q.Name
	}
	lo, hi := math.Inf(1), 0.0
	for _, s := range chartSeries {
		for _, q := range reads {
			if v := s.value(q); v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		lo, hi = 0.001, 1
	}
	floor := math.Pow10(int(math.Floor(math.Log10(lo / 1.5))))
	const width = 0.2
	for i, s := range chartSeries {
		bars := &logBars{floor: floor, color: s.color, width: width, offset: (float64(i) - 1.5) * width}
		for _, q := range reads {
			bars.values = append(bars.values, s.value(q))
		}
		p.Add(bars)
		p.Legend.Add(s.label, bars)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(len(reads))-0.4
	p.Y.Min, p.Y.Max = floor, hi*4 // room for the labels and the legend
	return p.Save(11*vg.Inch, 5.5*vg.Inch, file)
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
