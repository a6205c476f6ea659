package sdk_test

import (
	"testing"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk/sdktest"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// TestBasicOnlyDriverUnderContention puts a driver that declares only
// keyvalue.basic (so every call takes the SDK's plain Set/Get/Delete path)
// under the contention load; under -race a data race in the SDK's server,
// validation or deadline handling fails it.
func TestBasicOnlyDriverUnderContention(t *testing.T) {
	store := memstore.New()
	conn := sdktest.Serve(t, basicDriver{store, basicOnly{store}}, nil)
	sdktest.ContendKeyValue(t, keyvaluev1.NewKeyValueClient(conn), "contention/", sdktest.Load{})
}
