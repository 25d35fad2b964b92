package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/stagedoor/stagedoor/store"
)

type liveTarget struct {
	live    store.LiveState
	keyPath string // "" for direct ingest on the public name
	fp      string
}

// Reconcile makes live state and aliases match MediaMTX: every available key path of a
// known, active key is live and aliased to its owner's name; every public name MediaMTX
// carries directly (user/password or ?key= ingest) is live; every other alias is removed
// and every other name marked offline. It repairs missed hooks and crashes of either
// process. A MediaMTX that cannot be asked changes nothing.
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
	current, err := m.store.LiveStates(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	existing := make(map[string]string) // public name -> source of our alias entry
	for _, c := range confs {
		if kind, name := store.ParsePath(c.Name); kind == store.PathPublic && m.relay.isOurs(c.Source) {
			existing[name] = c.Source
		}
	}

	want := make(map[string]liveTarget)
	// Direct ingest on public names first: an alias must never replace it (adding the
	// exact-name entry would recreate the path and drop that publisher).
	for _, p := range paths {
		kind, name := store.ParsePath(p.Name)
		if kind != store.PathPublic || !p.Available || p.Source == nil || p.Source.ID == "" {
			continue
		}
		if _, ours := existing[name]; ours {
			continue
		}
		ch, err := m.store.ChannelByName(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		want[name] = liveTarget{live: store.LiveState{Name: name, UserID: ch.UserID, UserName: ch.UserName,
			SourceID: p.Source.ID, SourceType: p.Source.Type}}
	}
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
		if prev, ok := want[owner.UserName]; ok && (prev.keyPath == "" || !isCurrent(current, owner.UserName, p.Source.ID)) {
			continue // direct ingest holds the name, or another key of this user is current
		}
		want[owner.UserName] = liveTarget{
			live: store.LiveState{Name: owner.UserName, UserID: owner.UserID, UserName: owner.UserName,
				KeyID: owner.KeyID, SourceID: p.Source.ID, SourceType: p.Source.Type},
			keyPath: p.Name, fp: owner.Fingerprint,
		}
	}

	var errs []error
	for name, t := range want {
		if t.keyPath == "" {
			if !isCurrent(current, name, t.live.SourceID) {
				if err := m.store.SetLive(ctx, t.live); err != nil {
					errs = append(errs, err)
					continue
				}
				m.logger.Info("reconcile: live", "name", name)
			}
			continue
		}
		if existing[name] == m.relay.sourceURL(t.keyPath) && isCurrent(current, name, t.live.SourceID) {
			continue
		}
		if err := m.goLiveAliased(ctx, t.live, t.keyPath); err != nil {
			errs = append(errs, err)
			continue
		}
		m.logger.Info("reconcile: live and aliased", "name", name, "key_fp", t.fp)
	}
	for name := range existing {
		if t, ok := want[name]; ok && t.keyPath != "" {
			continue
		}
		if err := m.api.DeletePathConfig(ctx, store.LivePrefix+name); err != nil {
			errs = append(errs, fmt.Errorf("remove alias of %s: %w", name, err))
			continue
		}
		m.logger.Info("reconcile: alias removed", "name", name)
	}
	for _, l := range current {
		if _, ok := want[l.Name]; ok {
			continue
		}
		if _, err := m.store.SetOffline(ctx, l.Name, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		m.logger.Info("reconcile: offline", "name", l.Name)
	}
	return errors.Join(errs...)
}

func isCurrent(live []store.LiveState, name, sourceID string) bool {
	for _, l := range live {
		if l.Name == name {
			return l.SourceID == sourceID
		}
	}
	return false
}
