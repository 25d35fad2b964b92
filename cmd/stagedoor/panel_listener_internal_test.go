package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor/internal/testutil"
)

// TestPanelOwnListener: with --panel-addr the panel answers there (and / sends to it),
// and the public listener has no /panel/.
func TestPanelOwnListener(t *testing.T) {
	panelAddr := "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))
	s := startTestService(t, "--panel-addr", panelAddr, "--trusted-proxies", "10.0.0.0/8, 127.0.0.1")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		url  string
		want int
	}{
		{"http://" + panelAddr + "/panel/login", http.StatusOK},
		{"http://" + panelAddr + "/", http.StatusSeeOther},
		{"http://" + panelAddr + "/benw", http.StatusNotFound},
		{"http://" + s.public + "/panel/login", http.StatusNotFound},
	} {
		res, err := noRedirect.Get(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tt.want {
			t.Errorf("GET %s: %d, want %d", tt.url, res.StatusCode, tt.want)
		}
	}
}

func TestPanelFlagsRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"BadCIDR", []string{"--trusted-proxies", "10.0.0.0/8,not-an-ip"}, "trusted-proxies"},
		{"PanelOnPublicAddr", []string{"--panel-addr", "127.0.0.1:8088", "--public-addr", "127.0.0.1:8088"}, "panel-addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
			args := append([]string{"stagedoor", "serve", "--db", dbPath, "--public-addr", "127.0.0.1:0"}, tt.args...)
			err := run(t.Context(), args, serveEnv, strings.NewReader(""), io.Discard, &testutil.Buffer{})
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("serve %v: %v, want a usage error naming %s", tt.args, err, tt.want)
			}
			if _, statErr := os.Stat(dbPath); !errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("database file after refusal: stat err = %v, want not exist", statErr)
			}
		})
	}
}
