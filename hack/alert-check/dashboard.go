package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// scrapeInterval is how far apart the scrapes given to `dashboard` are taken to be, and what
// Grafana's $__interval is; $__rate_interval is four of them, as Grafana computes it for a
// Prometheus data source scraped at this interval (max($__interval + scrape interval, 4 * scrape
// interval)).
const scrapeInterval = 30 * time.Second

// grafanaDashboard is the part of Grafana's dashboard JSON model that holds queries.
type grafanaDashboard struct {
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	Title   string          `json:"title"`
	Type    string          `json:"type"`
	Targets []grafanaTarget `json:"targets"`
	// A collapsed row holds its panels.
	Panels []grafanaPanel `json:"panels"`
}

type grafanaTarget struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

type grafanaVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

type queryResult struct {
	Panel   string   `json:"panel"`
	RefID   string   `json:"refId"`
	Expr    string   `json:"expr"`
	Query   string   `json:"query"`
	Metrics []string `json:"metrics"`
	Unknown []string `json:"unknown"`
	// Absent are the named metrics the last scrape declares (# TYPE) but has no series of yet:
	// a counter family before its first event.
	Absent []string `json:"absent"`
	// Samples is the size of the result at each scrape's time.
	Samples []int  `json:"samples"`
	OK      bool   `json:"ok"`
	Why     string `json:"why,omitempty"`
}

type variableResult struct {
	Variable string `json:"variable"`
	Query    string `json:"query"`
	Values   int    `json:"values"`
	OK       bool   `json:"ok"`
	Why      string `json:"why,omitempty"`
}

// checkDashboard: every query of every panel of a Grafana dashboard parses as PromQL once
// Grafana's variables are replaced, names only metrics the scrapes have, and is evaluated by
// Prometheus' engine at each scrape's time (its result sizes are reported; which must be
// non-empty is the caller's judgement). Each label_values(metric, label) variable must select
// series that have that label.
//
// An argument --names=EXPOSITION adds the metric names of that page (e.g. one where every family
// has a series: prometheus-client writes no # TYPE line for a family without one) to those the
// operator exports, without its samples.
func checkDashboard(dashPath string, args []string, out *json.Encoder) (bool, error) {
	var expoPaths, namePaths []string
	for _, a := range args {
		if p, ok := strings.CutPrefix(a, "--names="); ok {
			namePaths = append(namePaths, p)
		} else {
			expoPaths = append(expoPaths, a)
		}
	}
	if len(expoPaths) == 0 {
		return false, errors.New("no scrape to evaluate on")
	}
	data, err := os.ReadFile(dashPath)
	if err != nil {
		return false, err
	}
	var dash grafanaDashboard
	if err := json.Unmarshal(data, &dash); err != nil {
		return false, fmt.Errorf("%s: %w", dashPath, err)
	}
	db, names, last, err := loadScrapes(expoPaths)
	if err != nil {
		return false, err
	}
	for _, p := range namePaths {
		_, more, _, err := loadScrapes([]string{p})
		if err != nil {
			return false, err
		}
		maps.Copy(names, more)
	}
	vars, allOK, err := checkVariables(dash.Templating.List, db, out)
	if err != nil {
		return false, err
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:           50_000_000,
		Timeout:              time.Minute,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               pql,
	})
	n := 0
	var walk func(ps []grafanaPanel) error
	walk = func(ps []grafanaPanel) error {
		for _, p := range ps {
			if err := walk(p.Panels); err != nil {
				return err
			}
			for _, t := range p.Targets {
				n++
				res := evalTarget(engine, db, names, vars, p.Title, t, len(expoPaths))
				for _, m := range res.Metrics {
					if !last[m] {
						res.Absent = append(res.Absent, m)
					}
				}
				allOK = allOK && res.OK
				if err := out.Encode(res); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(dash.Panels); err != nil {
		return false, err
	}
	if n == 0 {
		return false, fmt.Errorf("%s: no panel has a query", dashPath)
	}
	return allOK, nil
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// checkVariables returns each variable's value for "All" (what a query with every value selected
// sends), checking the label_values queries against the scrapes.
func checkVariables(vs []grafanaVariable, db memQueryable, out *json.Encoder) (map[string]string, bool, error) {
	vars := map[string]string{}
	allOK := true
	for _, v := range vs {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				return nil, false, fmt.Errorf("variable %s: query is neither a string nor {query}", v.Name)
			}
			q = obj.Query
		}
		res := variableResult{Variable: v.Name, Query: q, OK: true}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
		if m == nil {
			res.OK, res.Why = false, "not label_values(metric, label)"
		} else if sel, err := pql.ParseMetricSelector(m[1]); err != nil {
			res.OK, res.Why = false, err.Error()
		} else {
			vals, _, _ := db.LabelValues(context.Background(), m[2], nil, sel...)
			res.Values = len(vals)
			if len(vals) == 0 {
				res.OK, res.Why = false, fmt.Sprintf("no series of %s has the label %s", m[1], m[2])
			}
		}
		if !v.IncludeAll || v.AllValue == "" {
			res.OK, res.Why = false, "needs includeAll with an allValue (a regex such as .*)"
		}
		vars[v.Name] = v.AllValue
		allOK = allOK && res.OK
		if err := out.Encode(res); err != nil {
			return nil, false, err
		}
	}
	return vars, allOK, nil
}

var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)`)

// substitute replaces Grafana's variables as it does before sending a query.
func substitute(expr string, vars map[string]string) (string, error) {
	builtin := map[string]string{
		"__interval":      scrapeInterval.String(),
		"__rate_interval": (4 * scrapeInterval).String(),
		"__range":         (4 * scrapeInterval).String(),
	}
	var missing []string
	q := grafanaVar.ReplaceAllStringFunc(expr, func(s string) string {
		m := grafanaVar.FindStringSubmatch(s)
		name := m[1] + m[2] + m[3]
		if v, ok := builtin[name]; ok {
			return v
		}
		if v, ok := vars[name]; ok {
			return v
		}
		missing = append(missing, name)
		return s
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("unknown variables %s", strings.Join(missing, ", "))
	}
	return q, nil
}

func evalTarget(engine *promql.Engine, db memQueryable, names map[string]bool, vars map[string]string, panel string, t grafanaTarget, scrapes int) queryResult {
	res := queryResult{Panel: panel, RefID: t.RefID, Expr: t.Expr, Metrics: []string{}, Unknown: []string{}, Absent: []string{}, Samples: []int{}}
	q, err := substitute(t.Expr, vars)
	if err != nil {
		res.Why = err.Error()
		return res
	}
	res.Query = q
	expr, err := pql.ParseExpr(q)
	if err != nil {
		res.Why = err.Error()
		return res
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			if name != "" && !slices.Contains(res.Metrics, name) {
				res.Metrics = append(res.Metrics, name)
				if !names[name] {
					res.Unknown = append(res.Unknown, name)
				}
			}
		}
		return nil
	})
	if len(res.Metrics) == 0 {
		res.Why = "selects no metric by name"
		return res
	}
	if len(res.Unknown) > 0 {
		res.Why = fmt.Sprintf("the operator exports no %s", strings.Join(res.Unknown, ", "))
		return res
	}
	for i := range scrapes {
		ts := time.UnixMilli(0).Add(time.Duration(i) * scrapeInterval)
		n, err := instantSize(engine, db, q, ts)
		if err != nil {
			res.Why = err.Error()
			return res
		}
		res.Samples = append(res.Samples, n)
	}
	res.OK = true
	return res
}

func instantSize(engine *promql.Engine, db storage.Queryable, q string, ts time.Time) (int, error) {
	ctx := context.Background()
	qry, err := engine.NewInstantQuery(ctx, db, nil, q, ts)
	if err != nil {
		return 0, err
	}
	defer qry.Close()
	r := qry.Exec(ctx)
	if r.Err != nil {
		return 0, r.Err
	}
	switch v := r.Value.(type) {
	case promql.Vector:
		return len(v), nil
	case promql.Scalar:
		return 1, nil
	case promql.Matrix:
		return len(v), nil
	default:
		return 0, fmt.Errorf("result is a %s", r.Value.Type())
	}
}

// loadScrapes reads each page as Prometheus' scraper does, scrape i at i*scrapeInterval; a
// series a scrape no longer has gets a staleness marker, as Prometheus writes one. Returns the
// series, the metric names the pages export (those of their series, and those their # TYPE lines
// declare: a family with no series yet is still the operator's), and the names of the last
// page's series.
func loadScrapes(paths []string) (memQueryable, map[string]bool, map[string]bool, error) {
	type series struct {
		l       labels.Labels
		samples []chunks.Sample
	}
	all := map[uint64]*series{}
	names := map[string]bool{}
	var last map[string]bool
	for i, path := range paths {
		last = map[string]bool{}
		t := int64(i) * scrapeInterval.Milliseconds()
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, nil, err
		}
		p, err := textparse.New(data, "application/openmetrics-text; version=1.0.0; charset=utf-8", nil, textparse.ParserOptions{})
		if err != nil {
			return nil, nil, nil, err
		}
		seen := map[uint64]bool{}
		for {
			entry, err := p.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			if entry == textparse.EntryType {
				family, typ := p.Type()
				for _, n := range declared(string(family), typ) {
					names[n] = true
				}
				continue
			}
			if entry != textparse.EntrySeries {
				continue
			}
			var l labels.Labels
			p.Labels(&l)
			_, _, v := p.Series()
			h := l.Hash()
			seen[h] = true
			names[l.Get(labels.MetricName)] = true
			last[l.Get(labels.MetricName)] = true
			s, ok := all[h]
			if !ok {
				s = &series{l: l}
				all[h] = s
			}
			s.samples = append(s.samples, fSample{t: t, f: v})
		}
		if len(seen) == 0 {
			return nil, nil, nil, fmt.Errorf("%s: no series", path)
		}
		for h, s := range all {
			last := s.samples[len(s.samples)-1]
			if !seen[h] && !value.IsStaleNaN(last.F()) {
				s.samples = append(s.samples, fSample{t: t, f: math.Float64frombits(value.StaleNaN)})
			}
		}
	}
	var db memQueryable
	for _, s := range all {
		db = append(db, storage.NewListSeries(s.l, s.samples))
	}
	slices.SortFunc(db, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return db, names, last, nil
}

// declared are the series names an OpenMetrics family of this type has.
func declared(family string, typ model.MetricType) []string {
	switch typ {
	case model.MetricTypeCounter:
		return []string{family + "_total"}
	case model.MetricTypeHistogram:
		return []string{family + "_bucket", family + "_sum", family + "_count"}
	case model.MetricTypeSummary:
		return []string{family, family + "_sum", family + "_count"}
	default:
		return []string{family}
	}
}
