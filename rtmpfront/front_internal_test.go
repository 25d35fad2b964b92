package rtmpfront

import (
	"net"
	"strconv"
	"testing"
)

func TestProxyHeader(t *testing.T) {
	tcp := func(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	for _, tt := range []struct {
		name     string
		src, dst net.Addr
		want     string
	}{
		{"IPv4", tcp("198.51.100.1", 50123), tcp("192.0.2.10", 1935), "PROXY TCP4 198.51.100.1 192.0.2.10 50123 1935\r\n"},
		{"IPv6", tcp("2001:db8::1", 50123), tcp("2001:db8::a", 1935), "PROXY TCP6 2001:db8::1 2001:db8::a 50123 1935\r\n"},
		// A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6 addresses.
		{"IPv4MappedIsTCP4", tcp("::ffff:198.51.100.1", 50123), tcp("::ffff:192.0.2.10", 1935), "PROXY TCP4 198.51.100.1 192.0.2.10 50123 1935\r\n"},
		{"IPv6Loopback", tcp("::1", 40000), tcp("::1", 1935), "PROXY TCP6 ::1 ::1 40000 1935\r\n"},
		{"NotTCPIsUnknown", &net.UnixAddr{Name: "/tmp/s", Net: "unix"}, tcp("192.0.2.10", 1935), "PROXY UNKNOWN\r\n"},
		{"NilIsUnknown", nil, nil, "PROXY UNKNOWN\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := proxyHeader(tt.src, tt.dst); got != tt.want {
				t.Errorf("proxyHeader = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestProxyHeaderRealConnection names the two ends of a real loopback connection.
func TestProxyHeaderRealConnection(t *testing.T) {
	for _, tt := range []struct {
		name, network, addr, family string
	}{
		{"IPv4", "tcp4", "127.0.0.1:0", "TCP4"},
		{"IPv6", "tcp6", "[::1]:0", "TCP6"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", tt.network, err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}()
			client, err := (&net.Dialer{}).DialContext(t.Context(), tt.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, ok := <-accepted
			if !ok {
				t.Fatal("accept failed")
			}
			defer server.Close()
			c, s := client.LocalAddr().(*net.TCPAddr), server.LocalAddr().(*net.TCPAddr)
			want := "PROXY " + tt.family + " " + c.IP.String() + " " + s.IP.String() + " " +
				strconv.Itoa(c.Port) + " " + strconv.Itoa(s.Port) + "\r\n"
			if got := proxyHeader(server.RemoteAddr(), server.LocalAddr()); got != want {
				t.Errorf("proxyHeader = %q, want %q", got, want)
			}
		})
	}
}
