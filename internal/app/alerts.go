package app

import (
	"context"
	"os"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/alerts"
)

// configAlertHook is the configuration source's OnReload hook that raises config_refused for this control
// plane's directory (named with the host, since each control plane reads its own).
func configAlertHook(b *Base, dir string) func(context.Context, bool, string) {
	host, _ := os.Hostname()
	if dir == "" {
		dir = "(embedded default)"
	}
	return alerts.ConfigReloads(alerts.NewOutbox(b.Store, nil), host+":"+dir, b.Log.Named("alerts"))
}

// startAlerts runs the control plane's alerts until ctx ends: the sources it observes while
// it holds the alerts lock, and the delivery of the alert blocks the served configuration
// names.
func startAlerts(ctx context.Context, b *Base, dist *controlplane.Distribution, own func(context.Context) configapi.Health) (*alerts.Service, error) {
	snaps := alerts.NewSnapshots(dist.Cache.Current)
	svc, err := alerts.New(alerts.Options{
		Store:   b.Store,
		Alerts:  snaps.Alerts,
		Logger:  b.Log,
		Metrics: b.Metrics,
		Sources: []alerts.Source{
			alerts.ParkSource(b.Store, alerts.ParkOptions{}),
			alerts.RefreshSource(b.Store),
			alerts.SidecarSource(dist.Registry.List, own),
			alerts.WindowSource(b.Store, snaps.Alerts, nil),
			alerts.BudgetSource(b.Store, snaps.Current, alerts.DefaultBudgetThreshold, b.Env.AlertBudgetInterval, nil),
		},
	})
	if err != nil {
		return nil, err
	}
	go svc.Run(ctx)
	return svc, nil
}
