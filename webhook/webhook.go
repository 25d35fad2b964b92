// Package webhook delivers Stagedoor's events (stream.started, stream.stopped,
// user.banned, user.unbanned, key.rotated) to the operator's URLs, signed with
// HMAC-SHA256, retried with backoff, from the database outbox. It never runs on the auth
// or hook path: events are queued in the same transaction as the change they describe.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Headers of every delivery. The signature is "sha256=" + hex(HMAC-SHA256(secret,
// timestamp + "." + body)); receivers should also reject old timestamps.
const (
	HeaderSignature = "X-Stagedoor-Signature"
	HeaderTimestamp = "X-Stagedoor-Timestamp"
	HeaderEvent     = "X-Stagedoor-Event"
	HeaderDelivery  = "X-Stagedoor-Delivery"
)

// Payload is the JSON body of a delivery. It names the user and channel, never a key.
type Payload struct {
	ID      int64     `json:"id"`
	Event   string    `json:"event"`
	User    string    `json:"user"`
	Channel string    `json:"channel"`
	At      time.Time `json:"at"`
}

// Sign returns the signature header value for body sent at timestamp ts.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Store is the outbox and the audit trail.
type Store interface {
	DueEvents(ctx context.Context, limit int) ([]stagedoor.OutboxEvent, error)
	// ClaimEvents takes due events for owner for hold: no other dispatcher on the same
	// database gets them meanwhile.
	ClaimEvents(ctx context.Context, owner string, limit int, hold time.Duration) ([]stagedoor.OutboxEvent, error)
	FinishEvent(ctx context.Context, id int64) error
	RetryEvent(ctx context.Context, id int64, delay time.Duration) error
	AppendAudit(ctx context.Context, entries []stagedoor.AuditEntry) error
}

// Dispatcher delivers due outbox events. Set the fields, then call Run.
type Dispatcher struct {
	// URLs receive every event; none: events are dropped from the outbox.
	URLs []string
	// Secret signs every delivery. Required when URLs are set.
	Secret string
	Store  Store
	Logger *slog.Logger
	// MaxAttempts before an event is given up (recorded as failed). Default 8.
	MaxAttempts int
	// Client defaults to a client with a 5 s timeout.
	Client *http.Client
	// OnDelivery, if set, is told the result of each attempt (metrics).
	OnDelivery func(event string, ok bool)
	// Owner names this dispatcher among those sharing the database (the node id): each
	// event is claimed by one of them, so that several services on one database deliver
	// it once. Default "local".
	Owner string

	wake chan struct{}
}

// Wake asks the dispatcher to look for due events now; it never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers events until ctx ends, polling every second and on Wake.
func (d *Dispatcher) Run(ctx context.Context) {
	if d.MaxAttempts == 0 {
		d.MaxAttempts = 8
	}
	if d.Client == nil {
		d.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.wake == nil {
		d.wake = make(chan struct{}, 1)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if err := d.deliverDue(ctx); err != nil && ctx.Err() == nil {
			d.Logger.Warn("webhook dispatch", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// NewDispatcher returns a Dispatcher ready for Wake and Run.
func NewDispatcher(st Store, logger *slog.Logger, urls []string, secret string) *Dispatcher {
	return &Dispatcher{Store: st, Logger: logger.With("component", "webhook"), URLs: urls, Secret: secret,
		wake: make(chan struct{}, 1)}
}

// claimBatch is how many events a dispatcher claims at a time; a claim is held for as
// long as delivering them all to every URL can take (5 s a post), with a margin.
const claimBatch = 10

func (d *Dispatcher) deliverDue(ctx context.Context) error {
	owner := d.Owner
	if owner == "" {
		owner = "local"
	}
	hold := time.Duration(claimBatch*max(len(d.URLs), 1))*5*time.Second + 30*time.Second
	for {
		// A read first: an idle outbox costs no write each second.
		if due, err := d.Store.DueEvents(ctx, 1); err != nil || len(due) == 0 {
			return err
		}
		evs, err := d.Store.ClaimEvents(ctx, owner, claimBatch, hold)
		if err != nil || len(evs) == 0 {
			return err // none: another dispatcher holds what is due
		}
		for _, e := range evs {
			if err := d.deliver(ctx, e); err != nil {
				return err
			}
		}
	}
}

func (d *Dispatcher) deliver(ctx context.Context, e stagedoor.OutboxEvent) error {
	if len(d.URLs) == 0 {
		return d.Store.FinishEvent(ctx, e.ID)
	}
	body, err := json.Marshal(Payload{ID: e.ID, Event: e.Event, User: e.User, Channel: e.Channel, At: e.At})
	if err != nil {
		return err
	}
	var failed []string
	for _, u := range d.URLs {
		if err := d.post(ctx, u, e, body); err != nil {
			failed = append(failed, err.Error())
		}
	}
	ok := len(failed) == 0
	if d.OnDelivery != nil {
		d.OnDelivery(e.Event, ok)
	}
	entry := stagedoor.AuditEntry{At: time.Now(), Kind: "webhook", User: e.User, Decision: "delivered",
		Reason: fmt.Sprintf("%s #%d attempt %d", e.Event, e.ID, e.Attempts+1)}
	switch {
	case ok:
		err = d.Store.FinishEvent(ctx, e.ID)
	case e.Attempts+1 >= d.MaxAttempts:
		entry.Decision, entry.Reason = "failed", entry.Reason+": gave up: "+failed[0]
		err = d.Store.FinishEvent(ctx, e.ID)
	default:
		delay := min(time.Second<<e.Attempts, 5*time.Minute)
		entry.Decision, entry.Reason = "retry", entry.Reason+": "+failed[0]+"; next in "+delay.String()
		err = d.Store.RetryEvent(ctx, e.ID, delay)
	}
	if aerr := d.Store.AppendAudit(ctx, []stagedoor.AuditEntry{entry}); aerr != nil && err == nil {
		err = aerr
	}
	return err
}

func (d *Dispatcher) post(ctx context.Context, u string, e stagedoor.OutboxEvent, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("bad webhook url")
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderEvent, e.Event)
	req.Header.Set(HeaderDelivery, strconv.FormatInt(e.ID, 10))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(d.Secret, ts, body))
	res, err := d.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: unreachable", req.URL.Host)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s: status %d", req.URL.Host, res.StatusCode)
	}
	return nil
}
