package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ArgoHealth runs an Argo CD health script against obj under gopher-lua, set up as Argo CD's
// util/lua VM.runLua sets up a resource customization from argocd-cm (UseOpenLibs false): only
// the package, base and table libraries are open (Argo adds a safe subset of os, which fhirlock's
// script does not use, and which is left out here so that any use of it fails loudly), the
// object is the global `obj`, decoded as Argo's decodeValue does, and the run has a 1s deadline.
// The returned table must carry a valid Argo CD health status, as Argo checks.
func ArgoHealth(script string, obj *unstructured.Unstructured) (Result, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Result{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return Result{}, fmt.Errorf("health script: %w", err)
	}
	ret := l.Get(-1)
	tbl, ok := ret.(*lua.LTable)
	if !ok {
		return Result{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	status, _ := tbl.RawGetString("status").(lua.LString)
	message, _ := tbl.RawGetString("message").(lua.LString)
	switch string(status) {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		return Result{}, fmt.Errorf("Lua returned an invalid health status %q", string(status))
	}
	return Result{Name: obj.GetNamespace() + "/" + obj.GetName(), Status: string(status), Message: string(message)}, nil
}

// ArgoHealthFile runs the script against the object in path.
func ArgoHealthFile(script, path string) (Result, error) {
	u, err := readObject(path)
	if err != nil {
		return Result{}, err
	}
	return ArgoHealth(script, u)
}

// decodeValue is Argo CD's conversion of an unstructured object into Lua values
// (argo-cd util/lua/lua.go, after layeh.com/gopher-json): maps become hash tables, slices
// 1-based arrays, numbers LNumber, json.Number a string.
func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// healthTests is Argo CD's resource_customizations/<group>/<kind>/health_test.yaml format.
type healthTests struct {
	Tests []struct {
		InputPath    string `json:"inputPath"`
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
	} `json:"tests"`
}

// RunHealthTests runs dir/health.lua against every fixture in dir/health_test.yaml and
// compares status and message exactly, as Argo CD's own TestLuaHealthScript does.
func RunHealthTests(dir string) (int, error) {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return 0, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return 0, err
	}
	var tests healthTests
	if err := yaml.UnmarshalStrict(raw, &tests); err != nil {
		return 0, fmt.Errorf("health_test.yaml: %w", err)
	}
	if len(tests.Tests) == 0 {
		return 0, fmt.Errorf("health_test.yaml has no tests")
	}
	var failures []string
	for _, t := range tests.Tests {
		got, err := ArgoHealthFile(string(script), filepath.Join(dir, t.InputPath))
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", t.InputPath, err))
			continue
		}
		if got.Status != t.HealthStatus.Status || got.Message != t.HealthStatus.Message {
			failures = append(failures, fmt.Sprintf("%s: got %s %q, want %s %q",
				t.InputPath, got.Status, got.Message, t.HealthStatus.Status, t.HealthStatus.Message))
		}
	}
	if len(failures) > 0 {
		return 0, fmt.Errorf("%d of %d fixtures differ:\n  %s", len(failures), len(tests.Tests), joinLines(failures))
	}
	return len(tests.Tests), nil
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}
