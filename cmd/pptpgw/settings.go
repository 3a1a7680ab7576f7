package main

import (
	"sync/atomic"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

// running holds the daemon's effective settings for GET /v1/config,
// replaced at start and on each reload (the admin socket reads them from
// its own goroutines).
var running atomic.Pointer[map[string]string]

func publishSettings(c *config.Config) {
	m := map[string]string{}
	for _, s := range c.Effective() {
		m[s.Name] = s.Value
	}
	running.Store(&m)
}

// Settings serves GET /v1/config (admin.SettingsSource).
func (d *daemon) Settings() map[string]string {
	if m := running.Load(); m != nil {
		return *m
	}
	return map[string]string{}
}
