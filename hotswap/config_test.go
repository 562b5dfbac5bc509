package hotswap

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// Validate checks a Config as given and names the bad field by its setting
// key; New first fills zero fields from Defaults, so a library caller may
// leave them out.
func TestValidateNamesTheField(t *testing.T) {
	valid := func() Config {
		c := Defaults()
		c.Release.Path = "/bin/true"
		return c
	}
	if err := func() *Config { c := valid(); return &c }().Validate(); err != nil {
		t.Fatalf("Defaults() with a command: %v", err)
	}
	for _, tc := range []struct {
		key    string
		change func(*Config)
	}{
		{"grace", func(c *Config) { c.Grace = 0 }},
		{"drain-timeout", func(c *Config) { c.DrainTimeout = -time.Second }},
		{"start-timeout", func(c *Config) { c.StartTimeout = 0 }},
		{"rollback-window", func(c *Config) { c.RollbackWindow = 0 }},
		{"max-generations", func(c *Config) { c.MaxGenerations = 1 }},
		{"listen", func(c *Config) { c.Mode = ModeReuseport; c.Listeners = []ListenSpec{{Name: "http", URL: "tcp://:1"}} }},
		{"swap-signal", func(c *Config) { c.SwapSignal = syscall.SIGTERM }},
		{"swap-signal", func(c *Config) { c.SwapSignal = c.StopSignal }},
		{"swap-signal", func(c *Config) { c.SwapSignal = syscall.SIGKILL }},
	} {
		c := valid()
		tc.change(&c)
		var fe *FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Key != tc.key {
			t.Errorf("%s: Validate() = %v, want a FieldError for %s", tc.key, err, tc.key)
		}
	}

	zero := Config{Release: Release{Path: "/bin/true"}}
	zero.setDefaults()
	if err := zero.validate(); err != nil {
		t.Fatalf("zero Config after setDefaults: %v", err)
	}
	if d := Defaults(); zero.Grace != d.Grace || zero.MaxGenerations != d.MaxGenerations || zero.StopSignal != d.StopSignal {
		t.Fatalf("setDefaults did not apply Defaults(): %+v", zero)
	}
}
