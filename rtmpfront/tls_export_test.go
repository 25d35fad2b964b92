package rtmpfront

import "time"

// SetCertClock replaces c's clock, for tests of the once-a-second renewal check.
func SetCertClock(c *CertFile, now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	c.nextCheck = time.Time{}
}
