// alert-check evaluates Prometheus alerting rules as Prometheus does, without running one, so
// that the Helm chart's PrometheusRule is tested for what it does and not only for its shape:
//
//	alert-check test RULES TESTS            runs TESTS, unit tests in promtool's format
//	                                        (evaluation_interval; tests[].interval, input_series,
//	                                        alert_rule_test), against the alerting rules in RULES
//	alert-check selectors RULES EXPOSITION  every series selector of every rule in RULES matches
//	                                        a series of EXPOSITION (a /metrics page, OpenMetrics)
//	alert-check inputs TESTS EXPOSITION     every input series of TESTS is a metric EXPOSITION
//	                                        has, with only its labels and the target labels a
//	                                        scrape adds
//	alert-check dashboard DASHBOARD [--names=EXPO] EXPO...
//	                                        every query of a Grafana dashboard (JSON model)
//	                                        parses, names only metrics the scrapes EXPO... (and
//	                                        --names pages) have, and is evaluated at each
//	                                        scrape's time (30 s apart)
//
// RULES is a YAML stream: a Prometheus rule file ({groups: [...]}), or Kubernetes objects of which
// the PrometheusRule objects are read (as `helm template` writes them).
//
// The expressions run on Prometheus' own PromQL engine, annotations and labels are expanded by its
// own template package, and rule files are parsed and validated by its rulefmt, all from the
// pinned github.com/prometheus/prometheus module. Only the alerting state machine (pending, then
// firing once the expression has held for `for:`) and the storage are this program's: Prometheus'
// rules and tsdb packages would pull in every cloud SDK (config imports them), which costs more
// than twice the build time. eval.go follows rules.AlertingRule.Eval and promtool's test loop.
//
// Each command prints one JSON line per check and exits 1 if any check failed, 2 on bad input.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 4 || (len(os.Args) > 4 && os.Args[1] != "dashboard") {
		usage()
	}
	var (
		ok  bool
		err error
	)
	out := json.NewEncoder(os.Stdout)
	switch os.Args[1] {
	case "test":
		ok, err = runTests(os.Args[2], os.Args[3], out)
	case "selectors":
		ok, err = checkSelectors(os.Args[2], os.Args[3], out)
	case "inputs":
		ok, err = checkInputs(os.Args[2], os.Args[3], out)
	case "dashboard":
		ok, err = checkDashboard(os.Args[2], os.Args[3:], out)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alert-check:", err)
		os.Exit(2)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "alert-check: some checks failed")
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: alert-check test RULES TESTS | selectors RULES EXPOSITION | inputs TESTS EXPOSITION | dashboard DASHBOARD EXPOSITION...")
	os.Exit(2)
}
