package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"go.yaml.in/yaml/v3"
)

// The unit-test file, in promtool's format (the subset without recording rules, PromQL
// expression tests and rule_files: the rules are given on the command line).
type testFile struct {
	EvaluationInterval model.Duration `yaml:"evaluation_interval,omitempty"`
	Tests              []testGroup    `yaml:"tests"`
}

type testGroup struct {
	Name           string            `yaml:"name,omitempty"`
	Interval       model.Duration    `yaml:"interval,omitempty"`
	InputSeries    []inputSeries     `yaml:"input_series"`
	AlertRuleTests []alertTestCase   `yaml:"alert_rule_test"`
	ExternalLabels map[string]string `yaml:"external_labels,omitempty"`
	ExternalURL    string            `yaml:"external_url,omitempty"`
}

type inputSeries struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

type alertTestCase struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []expAlert     `yaml:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

func readTests(path string) (*testFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tf testFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(tf.Tests) == 0 {
		return nil, fmt.Errorf("%s: no tests", path)
	}
	return &tf, nil
}

// caseResult is what one alert_rule_test case found.
type caseResult struct {
	Test      string     `json:"test"`
	Alertname string     `json:"alertname"`
	EvalTime  string     `json:"eval_time"`
	Want      []alertOut `json:"want"`
	Got       []alertOut `json:"got"`
	OK        bool       `json:"ok"`
}

type alertOut struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// runTests runs every test group as promtool does: the input series from time 0, every rule
// evaluated every evaluation_interval from 0 to the last eval_time, and the alerts that are firing
// after the evaluation at ts compared with the cases whose eval_time is in [ts, ts+interval).
func runTests(rulesPath, testsPath string, out *json.Encoder) (bool, error) {
	tf, err := readTests(testsPath)
	if err != nil {
		return false, err
	}
	evalInterval := time.Duration(tf.EvaluationInterval)
	if evalInterval == 0 {
		evalInterval = time.Minute
	}
	allOK := true
	for _, tg := range tf.Tests {
		// Fresh rules (no alert state) for each group, as promtool loads them per group.
		rules, err := loadRules(rulesPath)
		if err != nil {
			return false, err
		}
		ok, err := runGroup(tg, rules, evalInterval, out)
		if err != nil {
			return false, fmt.Errorf("test %q: %w", tg.Name, err)
		}
		allOK = allOK && ok
	}
	return allOK, nil
}

func runGroup(tg testGroup, rules []*alertRule, evalInterval time.Duration, out *json.Encoder) (bool, error) {
	interval := time.Duration(tg.Interval)
	if interval == 0 {
		interval = evalInterval
	}
	db, err := loadSeries(tg.InputSeries, interval)
	if err != nil {
		return false, err
	}
	var extURL *url.URL
	if tg.ExternalURL != "" {
		if extURL, err = url.Parse(tg.ExternalURL); err != nil {
			return false, err
		}
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:               50_000_000,
		Timeout:                  time.Minute,
		NoStepSubqueryIntervalFn: func(int64) int64 { return evalInterval.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   pql,
	})
	query := engineQueryFunc(engine, db)

	names := map[string]bool{}
	for _, r := range rules {
		names[r.name] = true
	}
	byTime := map[time.Duration][]alertTestCase{}
	for _, c := range tg.AlertRuleTests {
		// A case about an alert that does not exist would pass whenever it expects nothing.
		if !names[c.Alertname] {
			return false, fmt.Errorf("alert_rule_test at %s names %q, which no rule defines", c.EvalTime, c.Alertname)
		}
		byTime[time.Duration(c.EvalTime)] = append(byTime[time.Duration(c.EvalTime)], c)
	}
	if len(byTime) == 0 {
		return false, errors.New("no alert_rule_test")
	}
	times := slices.Sorted(func(yield func(time.Duration) bool) {
		for t := range byTime {
			if !yield(t) {
				return
			}
		}
	})

	ctx := context.Background()
	mint := time.Unix(0, 0).UTC()
	maxt := mint.Add(times[len(times)-1])
	curr := 0
	allOK := true
	for ts := mint; !ts.After(maxt); ts = ts.Add(evalInterval) {
		for _, r := range rules {
			if err := r.eval(ctx, ts, query, tg.ExternalLabels, tg.ExternalURL, extURL); err != nil {
				return false, fmt.Errorf("rule %s at %s: %w", r.name, ts.Sub(mint), err)
			}
		}
		for curr < len(times) && ts.Sub(mint) <= times[curr] && times[curr] < ts.Add(evalInterval).Sub(mint) {
			for _, c := range byTime[times[curr]] {
				res := caseResult{
					Test:      tg.Name,
					Alertname: c.Alertname,
					EvalTime:  model.Duration(times[curr]).String(),
					Want:      []alertOut{},
					Got:       []alertOut{},
				}
				for _, r := range rules {
					if r.name != c.Alertname {
						continue
					}
					for _, a := range r.active {
						if a.state == stateFiring {
							res.Got = append(res.Got, alertOut{a.labels.Map(), a.annotations.Map()})
						}
					}
				}
				for _, e := range c.ExpAlerts {
					// Prometheus adds alertname; the test gives the rest.
					l := map[string]string{labels.AlertName: c.Alertname}
					for k, v := range e.ExpLabels {
						l[k] = v
					}
					a := e.ExpAnnotations
					if a == nil {
						a = map[string]string{}
					}
					res.Want = append(res.Want, alertOut{l, a})
				}
				sortAlerts(res.Got)
				sortAlerts(res.Want)
				res.OK = sameAlerts(res.Want, res.Got)
				allOK = allOK && res.OK
				if err := out.Encode(res); err != nil {
					return false, err
				}
			}
			curr++
		}
	}
	return allOK, nil
}

func alertKey(a alertOut) string {
	return labels.FromMap(a.Labels).String() + labels.FromMap(a.Annotations).String()
}

func sortAlerts(as []alertOut) {
	slices.SortFunc(as, func(a, b alertOut) int { return cmp.Compare(alertKey(a), alertKey(b)) })
}

func sameAlerts(a, b []alertOut) bool {
	return slices.EqualFunc(a, b, func(x, y alertOut) bool {
		return labels.Equal(labels.FromMap(x.Labels), labels.FromMap(y.Labels)) &&
			labels.Equal(labels.FromMap(x.Annotations), labels.FromMap(y.Annotations))
	})
}

// ---------------------------------------------------------------------------------------------
// Alerts: rules.AlertingRule.Eval (github.com/prometheus/prometheus/rules/alerting.go), without
// the ALERTS series, notifications and limits.

type alertState int

const (
	stateInactive alertState = iota
	statePending
	stateFiring
)

// resolvedRetention is how long Prometheus keeps a resolved alert (rules.resolvedRetention).
const resolvedRetention = 15 * time.Minute

type alert struct {
	state           alertState
	labels          labels.Labels
	annotations     labels.Labels
	value           float64
	activeAt        time.Time
	resolvedAt      time.Time
	keepFiringSince time.Time
}

type queryFunc func(ctx context.Context, q string, ts time.Time) (promql.Vector, error)

// engineQueryFunc is rules.EngineQueryFunc: an instant query whose result must be a vector or a
// scalar.
func engineQueryFunc(engine *promql.Engine, q storage.Queryable) queryFunc {
	return func(ctx context.Context, qs string, t time.Time) (promql.Vector, error) {
		qry, err := engine.NewInstantQuery(ctx, q, nil, qs, t)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		switch v := res.Value.(type) {
		case promql.Vector:
			return v, nil
		case promql.Scalar:
			return promql.Vector{promql.Sample{T: v.T, F: v.V, Metric: labels.Labels{}}}, nil
		default:
			return nil, errors.New("rule result is not a vector or scalar")
		}
	}
}

func (r *alertRule) eval(ctx context.Context, ts time.Time, query queryFunc, externalLabels map[string]string, externalURLText string, externalURL *url.URL) error {
	if r.active == nil {
		r.active = map[uint64]*alert{}
	}
	res, err := query(ctx, r.expr, ts.Add(-r.queryOffset))
	if err != nil {
		return err
	}
	resultFPs := map[uint64]struct{}{}
	alerts := make(map[uint64]*alert, len(res))
	for _, smpl := range res {
		tmplData := template.AlertTemplateData(smpl.Metric.Map(), externalLabels, externalURLText, smpl)
		defs := []string{
			"{{$labels := .Labels}}",
			"{{$externalLabels := .ExternalLabels}}",
			"{{$externalURL := .ExternalURL}}",
			"{{$value := .Value}}",
		}
		var expandErr error
		expand := func(text string) string {
			tmpl := template.NewTemplateExpander(ctx, strings.Join(append(defs, text), ""), "__alert_"+r.name,
				tmplData, model.Time(timestamp.FromTime(ts)), template.QueryFunc(query), externalURL, nil)
			result, err := tmpl.Expand()
			if err != nil {
				// Prometheus logs this and sends the error text; a test must not pass on it.
				expandErr = errors.Join(expandErr, err)
				result = fmt.Sprintf("<error expanding template: %s>", err)
			}
			return result
		}
		lb := labels.NewBuilder(smpl.Metric)
		lb.Del(labels.MetricName)
		r.labels.Range(func(l labels.Label) { lb.Set(l.Name, expand(l.Value)) })
		lb.Set(labels.AlertName, r.name)
		sb := labels.NewScratchBuilder(0)
		r.annotations.Range(func(a labels.Label) { sb.Add(a.Name, expand(a.Value)) })
		sb.Sort()
		if expandErr != nil {
			return fmt.Errorf("expanding templates: %w", expandErr)
		}
		lbs := lb.Labels()
		h := lbs.Hash()
		resultFPs[h] = struct{}{}
		if _, ok := alerts[h]; ok {
			return errors.New("vector contains metrics with the same labelset after applying alert labels")
		}
		alerts[h] = &alert{
			labels:      lbs,
			annotations: sb.Labels(),
			activeAt:    ts,
			state:       statePending,
			value:       smpl.F,
		}
	}
	for h, a := range alerts {
		if old, ok := r.active[h]; ok && old.state != stateInactive {
			old.value = a.value
			old.annotations = a.annotations
			continue
		}
		r.active[h] = a
	}
	for fp, a := range r.active {
		if _, ok := resultFPs[fp]; !ok {
			var keepFiring bool
			if a.state == stateFiring && r.keepFiringFor > 0 {
				if a.keepFiringSince.IsZero() {
					a.keepFiringSince = ts
				}
				keepFiring = ts.Sub(a.keepFiringSince) < r.keepFiringFor
			}
			if a.state == statePending || (!a.resolvedAt.IsZero() && ts.Sub(a.resolvedAt) > resolvedRetention) {
				delete(r.active, fp)
			}
			if a.state != stateInactive && !keepFiring {
				a.state = stateInactive
				a.resolvedAt = ts
			}
			if !keepFiring {
				continue
			}
		} else {
			a.keepFiringSince = time.Time{}
		}
		if a.state == statePending && ts.Sub(a.activeAt) >= r.holdDuration {
			a.state = stateFiring
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Storage: the input series in memory, as promqltest's `load` writes them (sample i at
// i*interval; `_` is no sample; `stale` is a staleness marker).

func loadSeries(in []inputSeries, interval time.Duration) (storage.Queryable, error) {
	var db memQueryable
	seen := map[uint64]string{}
	for _, is := range in {
		m, vals, err := pql.ParseSeriesDesc(is.Series + " " + is.Values)
		if err != nil {
			return nil, fmt.Errorf("input series %s: %w", is.Series, err)
		}
		if prev, ok := seen[m.Hash()]; ok {
			return nil, fmt.Errorf("input series %s given twice (also as %s)", is.Series, prev)
		}
		seen[m.Hash()] = is.Series
		var samples []chunks.Sample
		for i, v := range vals {
			if v.Omitted {
				continue
			}
			if v.Histogram != nil {
				return nil, fmt.Errorf("input series %s: histograms are not supported", is.Series)
			}
			samples = append(samples, fSample{t: int64(i) * interval.Milliseconds(), f: v.Value})
		}
		db = append(db, storage.NewListSeries(m, samples))
	}
	slices.SortFunc(db, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return db, nil
}

type fSample struct {
	t int64
	f float64
}

func (s fSample) T() int64                      { return s.t }
func (s fSample) ST() int64                     { return 0 }
func (s fSample) F() float64                    { return s.f }
func (s fSample) H() *histogram.Histogram       { return nil }
func (s fSample) FH() *histogram.FloatHistogram { return nil }
func (s fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fSample) Copy() chunks.Sample           { return s }

// memQueryable holds every series, sorted by labels; a querier selects those whose labels match.
type memQueryable []storage.Series

func (db memQueryable) Querier(int64, int64) (storage.Querier, error) { return db, nil }

func (db memQueryable) matching(ms []*labels.Matcher) []storage.Series {
	var out []storage.Series
	for _, s := range db {
		l := s.Labels()
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches(l.Get(m.Name)) }) {
			out = append(out, s)
		}
	}
	return out
}

func (db memQueryable) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return &seriesSet{series: db.matching(ms), i: -1}
}

func (db memQueryable) LabelValues(_ context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var vals []string
	for _, s := range db.matching(ms) {
		if v := s.Labels().Get(name); v != "" {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	return slices.Compact(vals), nil, nil
}

func (db memQueryable) LabelNames(_ context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var names []string
	for _, s := range db.matching(ms) {
		s.Labels().Range(func(l labels.Label) { names = append(names, l.Name) })
	}
	slices.Sort(names)
	return slices.Compact(names), nil, nil
}

func (db memQueryable) Close() error { return nil }

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }
