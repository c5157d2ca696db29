package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// pql parses as Prometheus does with no feature flag.
var pql = parser.NewParser(parser.Options{})

// alertRule is one alerting rule, with its alerts' state between evaluations.
type alertRule struct {
	group         string
	name          string
	expr          string
	holdDuration  time.Duration
	keepFiringFor time.Duration
	queryOffset   time.Duration
	labels        labels.Labels
	annotations   labels.Labels
	active        map[uint64]*alert
}

// loadRules reads the alerting rules of a rule file or of the PrometheusRule objects in a stream
// of Kubernetes objects, validated by Prometheus' rulefmt (expressions and templates included).
func loadRules(path string) ([]*alertRule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var files [][]byte
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var groups any
		switch {
		case doc["kind"] == "PrometheusRule":
			groups = doc["spec"]
		case doc["kind"] == nil && doc["groups"] != nil:
			groups = doc
		default:
			continue
		}
		b, err := yaml.Marshal(groups)
		if err != nil {
			return nil, err
		}
		files = append(files, b)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no PrometheusRule and no rule groups", path)
	}
	logger := slog.New(slog.DiscardHandler)
	var rules []*alertRule
	for _, f := range files {
		rgs, errs := rulefmt.Parse(f, false, model.UTF8Validation, pql, logger)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: invalid rules: %w", path, errors.Join(errs...))
		}
		for _, g := range rgs.Groups {
			var offset time.Duration
			if g.QueryOffset != nil {
				offset = time.Duration(*g.QueryOffset)
			}
			for _, r := range g.Rules {
				if r.Record != "" {
					return nil, fmt.Errorf("%s: group %s: recording rule %s: only alerting rules are supported", path, g.Name, r.Record)
				}
				// A rule's labels override its group's, as in Prometheus.
				lbls := maps.Clone(g.Labels)
				if lbls == nil {
					lbls = map[string]string{}
				}
				maps.Copy(lbls, r.Labels)
				rules = append(rules, &alertRule{
					group:         g.Name,
					name:          r.Alert,
					expr:          r.Expr,
					holdDuration:  time.Duration(r.For),
					keepFiringFor: time.Duration(r.KeepFiringFor),
					queryOffset:   offset,
					labels:        labels.FromMap(lbls),
					annotations:   labels.FromMap(r.Annotations),
				})
			}
		}
	}
	return rules, nil
}
