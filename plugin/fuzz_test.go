package plugin_test

import (
	"encoding/json"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/plugin"
)

// FuzzHookPayload: decoding and validating a hook body never panics, and a valid event
// always names a Stagedoor path and a known kind.
func FuzzHookPayload(f *testing.F) {
	key := stagedoor.NewKey()
	for _, s := range []string{
		`{"event":"available","path":"live/` + key + `","source_id":"6c4d8f1e","source_type":"rtmpConn"}`,
		`{"event":"unavailable","path":"live/benw","source_id":"x","source_type":"srtConn","key_digest":"` + string(make([]byte, 64)) + `"}`,
		`{"event":"ready","path":"live/benw"}`, `{"event":"available","path":"live/../x"}`, `[]`, `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var ev plugin.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			return
		}
		if ev.Validate() != nil {
			return
		}
		if ev.Kind != plugin.EventAvailable && ev.Kind != plugin.EventUnavailable {
			t.Fatalf("valid event with kind %q", ev.Kind)
		}
		if kind, _ := stagedoor.ParsePath(ev.Path); kind == stagedoor.PathOther {
			t.Fatalf("valid event with path %q", ev.Path)
		}
	})
}
