package stagedoor_test

import (
	"testing"

	"github.com/stagedoor/stagedoor"
)

func TestHLSURLTrimsTrailingSlash(t *testing.T) {
	for _, base := range []string{"http://h:8888", "http://h:8888/", "http://h:8888//"} {
		if got, want := stagedoor.HLSURL(base, "benw"), "http://h:8888/live/benw/index.m3u8"; got != want {
			t.Errorf("HLSURL(%q) = %q, want %q", base, got, want)
		}
	}
}
