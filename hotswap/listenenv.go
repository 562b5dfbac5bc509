package hotswap

import "github.com/hotswap-dev/hotswap/hotswap/listenenv"

// listenEnv renders --listen-env against the listeners in --listen order,
// which fixes their descriptors (fd 3..) for every generation alike.
func (c *Config) listenEnv() ([]string, error) {
	names := make([]string, len(c.Listeners))
	addrs := make([]string, len(c.Listeners))
	for i, l := range c.Listeners {
		names[i], addrs[i] = l.Name, l.URL
	}
	return listenenv.Render(c.ListenEnv, listenenv.Listeners(names, addrs))
}
