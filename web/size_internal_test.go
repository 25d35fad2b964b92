package web

import (
	"io/fs"
	"path"
	"testing"
)

// TestOwnAssetsUnder20KB keeps our page small (issue 7): the templates and every embedded
// static file except the vendored hls.js together stay under 20 KB uncompressed, an upper
// bound on what a channel page transfers besides hls.js.
func TestOwnAssetsUnder20KB(t *testing.T) {
	const limit = 20 << 10
	total := 0
	for _, embedded := range []fs.FS{static, templateFS} {
		err := fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path.Base(p) == HLSJS {
				return err
			}
			b, err := fs.ReadFile(embedded, p)
			t.Logf("%6d %s", len(b), p)
			total += len(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if total >= limit {
		t.Errorf("own assets = %d bytes, want < %d", total, limit)
	}
	t.Logf("own assets: %d bytes of %d", total, limit)
}
