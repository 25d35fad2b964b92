package panel_test

import (
	"testing"

	"github.com/stagedoor/stagedoor/panel"
)

// TestInviteURL: the CLI and the panel build invite links one way, under the configured
// public base whatever its trailing slash.
func TestInviteURL(t *testing.T) {
	for _, base := range []string{"https://tv.example/panel/", "https://tv.example/panel"} {
		if got, want := panel.InviteURL(base, "TOK"), "https://tv.example/panel/invite/TOK"; got != want {
			t.Errorf("InviteURL(%q) = %q, want %q", base, got, want)
		}
	}
}
