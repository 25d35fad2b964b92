//go:build !linux

package rtmpfront

import (
	"net"
	"time"
)

// pump is Linux's (pump_linux.go); elsewhere the front copies each connection itself.
type pump struct{ interval time.Duration }

func (p *pump) splice(client, up net.Conn) (ok bool, err error) { return false, nil }
