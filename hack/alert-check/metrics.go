package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetLabels are the labels a scrape through a prometheus-operator ServiceMonitor adds to every
// series (with honorLabels, a series' own label of the same name wins).
var targetLabels = []string{"instance", "job", "namespace", "pod", "service", "endpoint", "container"}

// exposition reads a /metrics page as Prometheus' scraper does (OpenMetrics, as fhirlock serves
// it) and returns its series.
func exposition(path string) ([]labels.Labels, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := textparse.New(data, "application/openmetrics-text; version=1.0.0; charset=utf-8", nil, textparse.ParserOptions{})
	if err != nil {
		return nil, err
	}
	var series []labels.Labels
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if entry == textparse.EntrySeries {
			var l labels.Labels
			p.Labels(&l)
			series = append(series, l)
		}
	}
	if len(series) == 0 {
		return nil, fmt.Errorf("%s: no series", path)
	}
	return series, nil
}

type selectorResult struct {
	Rule     string `json:"rule"`
	Selector string `json:"selector"`
	Matches  int    `json:"matches"`
	OK       bool   `json:"ok"`
}

// checkSelectors: every series selector in every rule's expression selects at least one series
// of the exposition. A misspelt metric or label value would otherwise make an alert that never
// fires.
func checkSelectors(rulesPath, expoPath string, out *json.Encoder) (bool, error) {
	rules, err := loadRules(rulesPath)
	if err != nil {
		return false, err
	}
	series, err := exposition(expoPath)
	if err != nil {
		return false, err
	}
	allOK := true
	for _, r := range rules {
		expr, err := pql.ParseExpr(r.expr)
		if err != nil {
			return false, fmt.Errorf("rule %s: %w", r.name, err)
		}
		var results []selectorResult
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			n := 0
			for _, s := range series {
				if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool { return !m.Matches(s.Get(m.Name)) }) {
					n++
				}
			}
			results = append(results, selectorResult{Rule: r.name, Selector: vs.String(), Matches: n, OK: n > 0})
			return nil
		})
		if len(results) == 0 {
			return false, fmt.Errorf("rule %s selects no series", r.name)
		}
		for _, res := range results {
			allOK = allOK && res.OK
			if err := out.Encode(res); err != nil {
				return false, err
			}
		}
	}
	return allOK, nil
}

type inputResult struct {
	Test   string `json:"test"`
	Series string `json:"series"`
	OK     bool   `json:"ok"`
	Why    string `json:"why,omitempty"`
}

// checkInputs: every input series of the unit tests is a metric of the exposition, and has only
// labels that metric has or that a scrape adds, so that the tests describe series fhirlock
// really exports.
func checkInputs(testsPath, expoPath string, out *json.Encoder) (bool, error) {
	tf, err := readTests(testsPath)
	if err != nil {
		return false, err
	}
	series, err := exposition(expoPath)
	if err != nil {
		return false, err
	}
	known := map[string][]string{} // metric name -> its label names
	for _, s := range series {
		name := s.Get(labels.MetricName)
		s.Range(func(l labels.Label) {
			if l.Name != labels.MetricName && !slices.Contains(known[name], l.Name) {
				known[name] = append(known[name], l.Name)
			}
		})
		if _, ok := known[name]; !ok {
			known[name] = []string{}
		}
	}
	allOK := true
	for _, tg := range tf.Tests {
		for _, is := range tg.InputSeries {
			m, err := pql.ParseMetric(is.Series)
			if err != nil {
				return false, fmt.Errorf("input series %s: %w", is.Series, err)
			}
			res := inputResult{Test: tg.Name, Series: is.Series, OK: true}
			name := m.Get(labels.MetricName)
			own, exported := known[name]
			if !exported {
				res.OK, res.Why = false, fmt.Sprintf("fhirlock exports no %s", name)
			} else {
				var extra []string
				m.Range(func(l labels.Label) {
					if l.Name != labels.MetricName && !slices.Contains(own, l.Name) && !slices.Contains(targetLabels, l.Name) {
						extra = append(extra, l.Name)
					}
				})
				if len(extra) > 0 {
					res.OK, res.Why = false, fmt.Sprintf("%s has no label %s (it has %s; a scrape adds %s)",
						name, strings.Join(extra, ", "), strings.Join(own, ", "), strings.Join(targetLabels, ", "))
				}
			}
			allOK = allOK && res.OK
			if err := out.Encode(res); err != nil {
				return false, err
			}
		}
	}
	return allOK, nil
}
