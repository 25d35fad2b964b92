package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor/internal/testutil"
)

// TestClusterFlagsRefused: a bad --cluster-cidrs or cluster secret is a usage error that
// names it (never quoting the secret) and creates nothing.
func TestClusterFlagsRefused(t *testing.T) {
	const bad = "has spaces and @:/ in it"
	for _, tt := range []struct {
		name   string
		args   []string
		secret string
		want   string
	}{
		{"BadCIDR", []string{"--cluster-cidrs", "10.0.0.0/8,nowhere"}, "", "cluster-cidrs"},
		{"ShortSecret", nil, "short", "STAGEDOOR_CLUSTER_SECRET"},
		{"SecretNotURLSafe", nil, bad, "STAGEDOOR_CLUSTER_SECRET"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
			env := func(k string) string {
				if k == envClusterSecret {
					return tt.secret
				}
				return serveEnv(k)
			}
			args := append([]string{"stagedoor", "serve", "--db", dbPath, "--public-addr", "127.0.0.1:0"}, tt.args...)
			err := run(t.Context(), args, env, strings.NewReader(""), io.Discard, &testutil.Buffer{})
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("serve %v: %v, want a usage error naming %s", tt.args, err, tt.want)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("the error quotes the secret: %v", err)
			}
			if _, statErr := os.Stat(dbPath); !errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("database file after refusal: stat err = %v, want not exist", statErr)
			}
		})
	}
}

// TestClusterSecretRedacted: the cluster secret is one of the secrets the log redactor
// replaces.
func TestClusterSecretRedacted(t *testing.T) {
	const secret = "cluster-Secret_0123456789"
	sec, err := loadSecrets(func(k string) string {
		if k == envClusterSecret {
			return secret
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sec.list() {
		found = found || s == secret
	}
	if !found {
		t.Errorf("secrets.list() lacks the cluster secret")
	}
}
