package redis

import goredis "github.com/redis/go-redis/v9"

// EscapeGlob exposes escapeGlob to the external test package.
var EscapeGlob = escapeGlob

// ClientOf returns the driver's current go-redis client (nil before Init),
// so tests can hold connections or observe that a client was closed (nil
// for a cluster client too).
func ClientOf(d *Driver) *goredis.Client {
	if c := d.cur.Load(); c != nil {
		client, _ := c.client.(*goredis.Client)
		return client
	}
	return nil
}
