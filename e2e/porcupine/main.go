// Command paddock-porcupine checks register histories for linearizability with porcupine, the
// checker etcd's robustness suite uses. The Rust side (e2e/src/check/linearizable.rs) writes the
// history as JSON on stdin; this prints one verdict per key as JSON on stdout and, for each key
// that is not linearizable, writes porcupine's HTML visualisation into the -viz directory.
//
// A register is a znode that starts at version 0 with an initial value. The model's state is
// (value, version):
//   - a read is legal iff it returned the state's value and version;
//   - an acknowledged unconditional write sets the value, and the version it was acknowledged
//     with must be the old version + 1;
//   - an acknowledged conditional write (expect = v) needs version v and becomes v + 1, which
//     must be the acknowledged version; a BadVersion answer needs a version other than v and
//     changes nothing;
//   - a write whose outcome is unknown returns at +infinity and accepts any output: it may take
//     effect at any point after its invocation, or (linearized last) never;
//   - failed ops, and reads whose outcome is unknown, constrain nothing and are dropped.
//
// Exit status: 0 when every verdict was printed (whatever they are), 2 on bad input or I/O.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// input is the whole history: the registers' initial values and every op.
type input struct {
	Initial map[string]string `json:"initial"`
	Ops     []op              `json:"ops"`
}

// op is one call of the history, flattened by the Rust side.
type op struct {
	// Index of the op in the recorded history, named in the visualisation.
	Id      int    `json:"id"`
	Client  int    `json:"client"`
	Session int64  `json:"session"`
	Key     string `json:"key"`
	// "read" or "write".
	Kind string `json:"kind"`
	// The value written (writes only).
	Value string `json:"value"`
	// The version a conditional write expected; null for an unconditional one.
	Expect *int32 `json:"expect"`
	Call   int64  `json:"call"`
	// null when the outcome is unknown.
	Return *int64 `json:"return"`
	// "read", "written", "bad_version", "failed" or "unknown".
	Outcome string `json:"outcome"`
	// What a read returned, and the version a read returned or a write was acknowledged with.
	ReadValue string `json:"read_value"`
	Version   int32  `json:"version"`
}

// verdict is what is printed for one key.
type verdict struct {
	Key string `json:"key"`
	// "ok", "illegal" or "unknown" (porcupine ran out of time).
	Result string `json:"result"`
	Ops    int    `json:"ops"`
	// The HTML visualisation written for an illegal history, if any.
	Visualization string `json:"visualization,omitempty"`
}

type state struct {
	value   string
	version int32
}

type callInput struct {
	write  bool
	value  string
	expect *int32
}

type callOutput struct {
	// "read", "written", "bad_version" or "unknown".
	outcome string
	value   string
	version int32
}

func step(s interface{}, in interface{}, out interface{}) (bool, interface{}) {
	st := s.(state)
	call := in.(callInput)
	res := out.(callOutput)
	if !call.write {
		return res.value == st.value && res.version == st.version, st
	}
	applies := call.expect == nil || *call.expect == st.version
	next := st
	if applies {
		next = state{value: call.value, version: st.version + 1}
	}
	switch res.outcome {
	case "unknown":
		return true, next
	case "written":
		return applies && res.version == next.version, next
	case "bad_version":
		return call.expect != nil && !applies, st
	default:
		return false, st
	}
}

func describeOperation(in interface{}, out interface{}) string {
	call := in.(callInput)
	res := out.(callOutput)
	if !call.write {
		return fmt.Sprintf("read -> %q v%d", res.value, res.version)
	}
	cond := ""
	if call.expect != nil {
		cond = fmt.Sprintf(" if v%d", *call.expect)
	}
	switch res.outcome {
	case "written":
		return fmt.Sprintf("write %q%s -> v%d", call.value, cond, res.version)
	case "bad_version":
		return fmt.Sprintf("write %q%s -> bad version", call.value, cond)
	default:
		return fmt.Sprintf("write %q%s -> ?", call.value, cond)
	}
}

func model(initial string) porcupine.Model {
	return porcupine.Model{
		Init:              func() interface{} { return state{value: initial} },
		Step:              step,
		DescribeOperation: describeOperation,
		DescribeState: func(s interface{}) string {
			st := s.(state)
			return fmt.Sprintf("%q v%d", st.value, st.version)
		},
		DescribeOperationMetadata: func(info interface{}) string {
			if info == nil {
				return ""
			}
			return info.(string)
		},
	}
}

// operations turns one key's ops into porcupine's, dropping those that constrain nothing.
// Each client gets a fresh visualisation row after an op of unknown outcome, which stays open
// to the end and would overlap its next ops.
func operations(ops []op) ([]porcupine.Operation, error) {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	rows := map[int]int{}
	next := 0
	var out []porcupine.Operation
	for _, o := range ops {
		if o.Outcome == "failed" || (o.Kind == "read" && o.Outcome == "unknown") {
			continue
		}
		var in callInput
		switch o.Kind {
		case "read":
			if o.Outcome != "read" {
				return nil, fmt.Errorf("op %d: a read with outcome %q", o.Id, o.Outcome)
			}
		case "write":
			if o.Outcome != "written" && o.Outcome != "bad_version" && o.Outcome != "unknown" {
				return nil, fmt.Errorf("op %d: a write with outcome %q", o.Id, o.Outcome)
			}
			in = callInput{write: true, value: o.Value, expect: o.Expect}
		default:
			return nil, fmt.Errorf("op %d: unknown kind %q", o.Id, o.Kind)
		}
		// An unknown write may carry a return time: the completion of the first read that saw
		// its value (values are unique, so it took effect by then).
		ret := int64(math.MaxInt64)
		if o.Return != nil {
			ret = *o.Return
		} else if o.Outcome != "unknown" {
			return nil, fmt.Errorf("op %d: outcome %q but no return time", o.Id, o.Outcome)
		}
		if ret < o.Call {
			return nil, fmt.Errorf("op %d: returned at %d before its call at %d", o.Id, ret, o.Call)
		}
		row, ok := rows[o.Client]
		if !ok {
			row = next
			next++
			rows[o.Client] = row
		}
		if o.Outcome == "unknown" {
			delete(rows, o.Client)
		}
		out = append(out, porcupine.Operation{
			ClientId: row,
			Input:    in,
			Call:     o.Call,
			Output:   callOutput{outcome: o.Outcome, value: o.ReadValue, version: o.Version},
			Return:   ret,
			Metadata: fmt.Sprintf("op %d, client %d, session 0x%x", o.Id, o.Client, o.Session),
		})
	}
	return out, nil
}

// fileName is a visualisation's file name for the i-th key.
func fileName(i int, key string) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, key)
	return fmt.Sprintf("linearizability-%d-%s.html", i, strings.Trim(safe, "_"))
}

func run(stdin io.Reader, stdout io.Writer, vizDir string, budget time.Duration) error {
	var in input
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("reading the history: %w", err)
	}
	byKey := map[string][]op{}
	for _, o := range in.Ops {
		byKey[o.Key] = append(byKey[o.Key], o)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// One budget for all keys: porcupine's search is NP-hard, and one hard key must not starve
	// the verdicts of the others forever, nor the caller's wait.
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	verdicts := []verdict{}
	for i, key := range keys {
		ops, err := operations(byKey[key])
		if err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
		v := verdict{Key: key, Ops: len(ops)}
		left := time.Until(deadline(ctx))
		if left <= 0 {
			v.Result = "unknown"
			verdicts = append(verdicts, v)
			continue
		}
		m := model(in.Initial[key])
		res, info := porcupine.CheckOperationsVerbose(m, ops, left)
		switch res {
		case porcupine.Ok:
			v.Result = "ok"
		case porcupine.Illegal:
			v.Result = "illegal"
			if vizDir != "" {
				if err := os.MkdirAll(vizDir, 0o755); err != nil {
					return fmt.Errorf("creating %s: %w", vizDir, err)
				}
				path := filepath.Join(vizDir, fileName(i, key))
				if err := porcupine.VisualizePath(m, info, path); err != nil {
					return fmt.Errorf("writing the visualisation of key %q: %w", key, err)
				}
				v.Visualization = path
			}
		default:
			v.Result = "unknown"
		}
		verdicts = append(verdicts, v)
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(map[string][]verdict{"keys": verdicts})
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

func main() {
	vizDir := flag.String("viz", "", "directory for the HTML visualisation of each key that is not linearizable")
	budget := flag.Duration("timeout", 60*time.Second, "time porcupine may search, for all keys together")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *vizDir, *budget); err != nil {
		fmt.Fprintf(os.Stderr, "paddock-porcupine: %v\n", err)
		os.Exit(2)
	}
}
