package stagedoor

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by DB methods; match them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	ErrInactive = errors.New("user is banned")
)

// InvalidError reports a value that does not follow the grammar of its field.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// ErrProbeInconclusive is a backend health probe's answer when this process's own
// writers kept it waiting for its turn but none of them has been stuck: a busy queue,
// not a fault. The health state stays as it was.
var ErrProbeInconclusive = errors.New("health probe inconclusive: write queue busy")
