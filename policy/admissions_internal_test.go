package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

// TestAdmissionsBounded: an admission is forgotten after admissionTTL, the oldest go first
// beyond maxAdmissions, and a session recorded again keeps its newer answer.
func TestAdmissionsBounded(t *testing.T) {
	d := stagedoor.KeyDigest("k")
	adm := Admission{KeyDigest: &d}
	t.Run("ExpiresAfterTTL", func(t *testing.T) {
		clock := testutil.NewClock(time.Unix(1_000_000, 0))
		a := newAdmissions(clock.Now)
		a.Record("s", adm)
		clock.Add(admissionTTL)
		if _, ok := a.Admitted("s"); !ok {
			t.Fatal("forgotten at the TTL, want kept until it passed")
		}
		clock.Add(time.Second)
		if _, ok := a.Admitted("s"); ok {
			t.Error("still remembered after the TTL")
		}
	})
	t.Run("OldestEvictedAtCapacity", func(t *testing.T) {
		clock := testutil.NewClock(time.Unix(1_000_000, 0))
		a := newAdmissions(clock.Now)
		for i := range maxAdmissions + 1 {
			a.Record(fmt.Sprint(i), adm)
		}
		if _, ok := a.Admitted("0"); ok {
			t.Error("oldest still remembered beyond capacity")
		}
		if _, ok := a.Admitted(fmt.Sprint(maxAdmissions)); !ok {
			t.Error("newest forgotten")
		}
		if got := len(a.byID); got != maxAdmissions {
			t.Errorf("remembered = %d, want %d", got, maxAdmissions)
		}
	})
	t.Run("RecordedAgainKeepsNewer", func(t *testing.T) {
		clock := testutil.NewClock(time.Unix(1_000_000, 0))
		a := newAdmissions(clock.Now)
		a.Record("s", Admission{})
		clock.Add(admissionTTL / 2)
		a.Record("s", adm)
		clock.Add(admissionTTL/2 + time.Second) // the first record expired, the second not
		got, ok := a.Admitted("s")
		if !ok || got.KeyDigest == nil {
			t.Errorf("Admitted(s) = %+v, %v; want the newer record", got, ok)
		}
	})
}
