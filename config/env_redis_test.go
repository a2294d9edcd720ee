package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRedisSentinelAndClusterVariables(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantErr  string // substring; "" means no error
		check    func(t *testing.T, e *Env)
		wantAddr string
	}{
		{
			name: "cluster nodes are split on commas and trimmed",
			env:  map[string]string{EnvRedisClusterNodes: "10.0.0.1:7000, 10.0.0.2:7000 ,10.0.0.3:7000"},
			check: func(t *testing.T, e *Env) {
				if diff := cmp.Diff([]string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}, e.RedisClusterNodes); diff != "" {
					t.Errorf("cluster nodes (-want +got):\n%s", diff)
				}
			},
			wantAddr: "cluster 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
		},
		{
			name: "sentinel master, addresses and password",
			env: map[string]string{EnvRedisSentinelMaster: "mymaster", EnvRedisSentinelAddrs: "s1:26379,s2:26379",
				EnvRedisSentinelPassword: "hunter2", EnvRedisPassword: "hunter3"},
			check: func(t *testing.T, e *Env) {
				if e.RedisSentinelMaster != "mymaster" || e.RedisSentinelPassword != "hunter2" || len(e.RedisSentinelAddrs) != 2 {
					t.Errorf("got %q %q %v, want mymaster hunter2 [s1:26379 s2:26379]", e.RedisSentinelMaster, e.RedisSentinelPassword, e.RedisSentinelAddrs)
				}
			},
			wantAddr: "sentinel master mymaster via s1:26379,s2:26379",
		},
		{
			name:    "an address without a port is refused",
			env:     map[string]string{EnvRedisClusterNodes: "10.0.0.1:7000,10.0.0.2"},
			wantErr: `REDIS_CLUSTER_NODES: must be a comma-separated list of host:port, got "10.0.0.2"`,
		},
		{
			name:    "sentinel master without addresses is refused",
			env:     map[string]string{EnvRedisSentinelMaster: "mymaster"},
			wantErr: "REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRS go together",
		},
		{
			name:    "sentinel addresses without a master are refused",
			env:     map[string]string{EnvRedisSentinelAddrs: "s1:26379"},
			wantErr: "REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRS go together",
		},
		{
			name:    "sentinel and cluster together are refused",
			env:     map[string]string{EnvRedisSentinelMaster: "m", EnvRedisSentinelAddrs: "s1:26379", EnvRedisClusterNodes: "c:7000"},
			wantErr: "exclude each other",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := loadEnv(t, tt.env, tt.wantErr)
			if e == nil {
				return
			}
			tt.check(t, e)
			if got := e.RedisAddr(); got != tt.wantAddr {
				t.Errorf("RedisAddr: got %q, want %q", got, tt.wantAddr)
			}
			if strings.Contains(e.RedisAddr(), "hunter") {
				t.Errorf("RedisAddr %q shows a password", e.RedisAddr())
			}
			if !e.RedisConfigured() {
				t.Error("RedisConfigured: got false, want true")
			}
		})
	}
}
