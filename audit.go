package stagedoor

import "time"

// AuditEntry is one line of the audit trail. It never holds a secret.
type AuditEntry struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"` // publish, kick, webhook, admin
	User     string    `json:"user"`
	KeyFP    string    `json:"key_fp"`
	IP       string    `json:"ip"`
	Protocol string    `json:"protocol"`
	Decision string    `json:"decision"` // allow, deny, ok, failed, …
	Reason   string    `json:"reason"`
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	User string
	// Kind is one of AuditEntry's kinds (publish, kick, webhook, admin); "" matches all.
	Kind  string
	Since time.Time
	// Until, if set, keeps only entries before it.
	Until time.Time
	Limit int // default 1000
}
