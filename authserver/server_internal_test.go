package authserver

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

// serveGuarded serves newEngine with denyUnlessWritten in front of h, like NewHandler.
func serveGuarded(t *testing.T, h gin.HandlerFunc) (*httptest.Server, *testutil.Buffer) {
	t.Helper()
	lb := &testutil.Buffer{}
	r := newEngine(slog.New(slog.NewTextHandler(lb, nil)))
	r.POST("/mediamtx/auth", denyUnlessWritten, h)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, lb
}

func postEmpty(t *testing.T, srv *httptest.Server) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/mediamtx/auth", strings.NewReader(`{}`))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return resp.StatusCode, string(b)
}

func TestDenyUnlessWritten(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    gin.HandlerFunc
	}{
		{"SilentHandlerDenied", func(*gin.Context) {}},
		{"StatusWithoutWriteDenied", func(c *gin.Context) { c.Status(http.StatusOK) }},
		{"NoContentWithoutWriteDenied", func(c *gin.Context) { c.Status(http.StatusNoContent) }},
		{"AbortWithoutWriteDenied", func(c *gin.Context) { c.Abort() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := serveGuarded(t, tt.h)
			status, body := postEmpty(t, srv)
			if status != http.StatusUnauthorized {
				t.Errorf("status = %d, want %d", status, http.StatusUnauthorized)
			}
			if body != DenyBody {
				t.Errorf("body = %q, want %q", body, DenyBody)
			}
		})
	}
}

// TestDenyUnlessWrittenKeepsWrittenReply checks the guard does not rewrite a reply the
// handler wrote, allow or deny.
func TestDenyUnlessWrittenKeepsWrittenReply(t *testing.T) {
	for _, tt := range []struct {
		name       string
		h          gin.HandlerFunc
		wantStatus int
		wantBody   string
	}{
		{"ExplicitAllowKept", func(c *gin.Context) {
			c.Status(http.StatusNoContent)
			c.Writer.WriteHeaderNow()
		}, http.StatusNoContent, ""},
		{"ExplicitDenyKept", func(c *gin.Context) { c.String(http.StatusTooManyRequests, DenyBody) }, http.StatusTooManyRequests, DenyBody},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := serveGuarded(t, tt.h)
			status, body := postEmpty(t, srv)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("reply = %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestEnginePanicDenied(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    gin.HandlerFunc
	}{
		{"PanicBeforeWriteIs500", func(*gin.Context) { panic("boom") }},
		{"PanicAfterStatusIs500", func(c *gin.Context) {
			c.Status(http.StatusOK)
			panic("boom")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, lb := serveGuarded(t, tt.h)
			status, body := postEmpty(t, srv)
			if status != http.StatusInternalServerError {
				t.Errorf("status = %d, want %d", status, http.StatusInternalServerError)
			}
			if body != DenyBody {
				t.Errorf("body = %q, want %q", body, DenyBody)
			}
			if !strings.Contains(lb.String(), "panic in handler") {
				t.Errorf("panic not logged; log:\n%s", lb)
			}
			// The engine keeps serving after the panic.
			if status, _ := postEmpty(t, srv); status != http.StatusInternalServerError {
				t.Errorf("second request: status = %d, want %d", status, http.StatusInternalServerError)
			}
		})
	}
}
