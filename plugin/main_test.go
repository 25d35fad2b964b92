package plugin_test

import (
	"os"
	"testing"

	"github.com/stagedoor/stagedoor/store/pgtest"
)

// TestMain stops the throw-away PostgreSQL the cluster tests start (store/pgtest).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
