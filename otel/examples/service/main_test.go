package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunPrintsTheSpanTree runs the example and checks the spans it
// prints: a miss nests the loader's database span under rediscache.load
// under rediscache.getorload under the handler's span.
func TestRunPrintsTheSpanTree(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, ""))

	type span struct {
		Name        string
		SpanContext struct{ SpanID string }
		Parent      struct{ SpanID string }
	}
	var spans []span
	dec := json.NewDecoder(&out)
	for dec.More() {
		var s span
		require.NoError(t, dec.Decode(&s))
		spans = append(spans, s)
	}
	names := map[string]int{}
	byID := map[string]span{}
	for _, s := range spans {
		names[s.Name]++
		byID[s.SpanContext.SpanID] = s
	}
	assert.Equal(t, 3, names["GET /tasks/{id}"])
	assert.Equal(t, 3, names["rediscache.getorload"])
	assert.Equal(t, 2, names["rediscache.load"], "tasks 7 and 8 miss once each")
	assert.Equal(t, 2, names["SELECT task"])
	for _, s := range spans {
		if s.Name != "SELECT task" {
			continue
		}
		load := byID[s.Parent.SpanID]
		require.Equal(t, "rediscache.load", load.Name)
		call := byID[load.Parent.SpanID]
		require.Equal(t, "rediscache.getorload", call.Name)
		assert.Equal(t, "GET /tasks/{id}", byID[call.Parent.SpanID].Name)
	}
}
