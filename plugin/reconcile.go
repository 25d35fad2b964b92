package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/stagedoor/stagedoor/store"
)

type liveTarget struct {
	owner   store.KeyOwner
	keyPath string
	source  *PathSource
}

// Reconcile makes live state and aliases match MediaMTX: every available key path of a
// known, active key is live and aliased; every other alias is removed and every other
// user marked offline. It repairs missed hooks and crashes of either process.
func (m *Manager) Reconcile(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()

	paths, err := m.api.Paths(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: list paths: %w", err)
	}
	confs, err := m.api.PathConfigs(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: list path configs: %w", err)
	}
	live, err := m.store.LiveUsers(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}

	want := make(map[string]liveTarget)
	for _, p := range paths {
		kind, key := store.ParsePath(p.Name)
		if kind != store.PathKey || !p.Available || p.Source == nil || p.Source.ID == "" {
			continue
		}
		owner, err := m.store.UserByKeyDigest(ctx, store.KeyDigest(key))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		if !owner.Active {
			continue
		}
		if prev, ok := want[owner.UserName]; ok && !isCurrent(live, prev.owner.UserID, p.Source.ID) {
			continue // two keys of one user live at once: keep the first unless this one is current
		}
		want[owner.UserName] = liveTarget{owner: owner, keyPath: p.Name, source: p.Source}
	}

	existing := make(map[string]string)
	for _, c := range confs {
		if kind, name := store.ParsePath(c.Name); kind == store.PathPublic && m.relay.isOurs(c.Source) {
			existing[name] = c.Source
		}
	}

	var errs []error
	for name, t := range want {
		if existing[name] == m.relay.sourceURL(t.keyPath) && isCurrent(live, t.owner.UserID, t.source.ID) {
			continue
		}
		if err := m.goLive(ctx, t.owner, t.keyPath, t.source); err != nil {
			errs = append(errs, err)
			continue
		}
		m.logger.Info("reconcile: channel live", "user", name, "key_fp", t.owner.Fingerprint)
	}
	for name := range existing {
		if _, ok := want[name]; ok {
			continue
		}
		if err := m.api.DeletePathConfig(ctx, store.LivePrefix+name); err != nil {
			errs = append(errs, fmt.Errorf("remove alias of %s: %w", name, err))
			continue
		}
		m.logger.Info("reconcile: alias removed", "user", name)
	}
	for _, l := range live {
		if _, ok := want[l.UserName]; ok {
			continue
		}
		if _, err := m.store.SetOffline(ctx, l.UserID, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		m.logger.Info("reconcile: channel offline", "user", l.UserName)
	}
	return errors.Join(errs...)
}

func isCurrent(live []store.LiveState, userID int64, sourceID string) bool {
	for _, l := range live {
		if l.UserID == userID {
			return l.SourceID == sourceID
		}
	}
	return false
}
