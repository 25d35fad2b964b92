package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
)

func itoa(i int) string { return strconv.Itoa(i) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func jsonField(t testing.TB, s, field string) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	str, _ := v[field].(string)
	return str
}
