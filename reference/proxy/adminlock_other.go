//go:build !unix

package proxy

import "sync"

var storeLock sync.Mutex

// lockFile serialises the store's changes within this process only: on
// this platform proxies must not share a store file.
func lockFile(string) (func(), error) {
	storeLock.Lock()
	return storeLock.Unlock, nil
}
