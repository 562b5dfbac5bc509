package activation

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// allowedAddrs is the error hint for bad listen addresses.
const allowedAddrs = "want tcp://HOST:PORT, tcp4://HOST:PORT, tcp6://[HOST]:PORT, unix:///ABSOLUTE/PATH or unix://@ABSTRACT (HOST may be empty for all addresses, e.g. tcp://:8080)"

// ParseAddr splits a listen address of the form tcp://HOST:PORT,
// tcp4://HOST:PORT, tcp6://[HOST]:PORT, unix:///PATH or unix://@NAME (Linux
// abstract socket) into the network and address that [Listen] and
// net.Listen take. HOST may be empty (all addresses); PORT must be numeric.
func ParseAddr(s string) (network, address string, err error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "", "", fmt.Errorf("reuseport: parse address %q: missing scheme; %s", s, allowedAddrs)
	}
	switch scheme {
	case "tcp", "tcp4", "tcp6":
		if err := checkHostPort(scheme, rest); err != nil {
			return "", "", fmt.Errorf("reuseport: parse address %q: %w; %s", s, err, allowedAddrs)
		}
		return scheme, rest, nil
	case "unix":
		switch {
		case strings.HasPrefix(rest, "@") && len(rest) > 1:
		case strings.HasPrefix(rest, "/") && len(rest) > 1:
		default:
			return "", "", fmt.Errorf("reuseport: parse address %q: unix socket path must be absolute or @abstract; %s", s, allowedAddrs)
		}
		if len(rest) > 107 { // sizeof(sun_path) - 1
			return "", "", fmt.Errorf("reuseport: parse address %q: unix socket path is %d bytes, the limit is 107", s, len(rest))
		}
		return "unix", rest, nil
	default:
		return "", "", fmt.Errorf("reuseport: parse address %q: unknown scheme %q; %s", s, scheme, allowedAddrs)
	}
}

// checkHostPort validates HOST:PORT for a TCP network.
func checkHostPort(network, hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" {
		return nil
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		// A host name: resolved by net.Listen; fine for tcp, tcp4 and tcp6.
	case network == "tcp4" && ip.To4() == nil:
		return fmt.Errorf("%s is not an IPv4 address", host)
	case network == "tcp6" && ip.To4() != nil && !strings.Contains(host, ":"):
		return fmt.Errorf("%s is not an IPv6 address", host)
	}
	return nil
}

// ParseFallback accepts what [ParseAddr] accepts plus a bare HOST:PORT
// (meaning tcp), the form server authors usually write for the address a
// server binds itself when it inherited no listeners.
func ParseFallback(s string) (network, address string, err error) {
	if strings.Contains(s, "://") {
		return ParseAddr(s)
	}
	if err := checkHostPort("tcp", s); err != nil {
		return "", "", fmt.Errorf("reuseport: parse address %q: %w; %s, or HOST:PORT", s, err, allowedAddrs)
	}
	return "tcp", s, nil
}
