package sidecar

import (
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
)

type retentionProbe struct{ hourly, daily time.Duration }

func (p *retentionProbe) SetUsageRetention(hourly, daily time.Duration) {
	p.hourly, p.daily = hourly, daily
}

func TestAppliedConfigSetsUsageBucketRetention(t *testing.T) {
	probe := &retentionProbe{}
	s := New(Options{Retention: probe})
	snap, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(snap); err != nil {
		t.Fatal(err)
	}
	if probe.hourly != config.DefaultHourlyRetention || probe.daily != config.DefaultDailyRetention {
		t.Errorf("without a usage block: got %v/%v, want the defaults", probe.hourly, probe.daily)
	}
	with := *snap
	with.Usage = &config.Usage{HourlyRetention: "3d", DailyRetention: "2400h"}
	if err := s.Apply(&with); err != nil {
		t.Fatal(err)
	}
	if probe.hourly != 72*time.Hour || probe.daily != 2400*time.Hour {
		t.Errorf("got %v/%v, want 72h/2400h", probe.hourly, probe.daily)
	}
}
