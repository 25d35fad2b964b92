package main

import (
	"testing"

	"github.com/stagedoor/stagedoor/policy"
)

// TestSelfCheckNote (issue 11): only the anonymous api request carrying this run's
// marker is labelled as the self-check; a forged or guessed marker, another action or
// a request with credentials is not.
func TestSelfCheckNote(t *testing.T) {
	const marker = "m4rker-0123456789abcdefghijklmn"
	note := selfCheckNote(marker)
	probe := policy.Attempt{Action: policy.ActionAPI, IP: "127.0.0.1", Query: "itemsPerPage=1&" + selfCheckParam + "=" + marker}
	for _, tt := range []struct {
		name  string
		edit  func(*policy.Attempt)
		label bool
	}{
		{"Probe", func(*policy.Attempt) {}, true},
		{"MarkerFirst", func(a *policy.Attempt) { a.Query = selfCheckParam + "=" + marker }, true},
		{"WrongMarker", func(a *policy.Attempt) { a.Query = selfCheckParam + "=guess" }, false},
		{"MarkerPrefix", func(a *policy.Attempt) { a.Query = selfCheckParam + "=" + marker[:10] }, false},
		{"MarkerLonger", func(a *policy.Attempt) { a.Query = selfCheckParam + "=" + marker + "x" }, false},
		{"EmptyMarker", func(a *policy.Attempt) { a.Query = selfCheckParam + "=" }, false},
		{"NoQuery", func(a *policy.Attempt) { a.Query = "" }, false},
		{"Twice", func(a *policy.Attempt) { a.Query += "&" + selfCheckParam + "=x" }, false},
		{"OtherParamName", func(a *policy.Attempt) { a.Query = "x" + selfCheckParam + "=" + marker }, false},
		{"Publish", func(a *policy.Attempt) { a.Action = policy.ActionPublish }, false},
		{"Metrics", func(a *policy.Attempt) { a.Action = policy.ActionMetrics }, false},
		{"WithUser", func(a *policy.Attempt) { a.User = "stagedoor-admin" }, false},
		{"WithPassword", func(a *policy.Attempt) { a.Password = "x" }, false},
		{"WithToken", func(a *policy.Attempt) { a.Token = "x" }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := probe
			tt.edit(&a)
			if got := note(a) != ""; got != tt.label {
				t.Errorf("labelled = %v, want %v", got, tt.label)
			}
		})
	}
	if selfCheckNote("")(policy.Attempt{Action: policy.ActionAPI, Query: selfCheckParam + "="}) != "" {
		t.Error("an empty marker labels an empty one")
	}
}
