package detail_test

import (
	"testing"

	"github.com/prism-suite/prism/proto/detail"
)

func TestGet(t *testing.T) {
	for _, c := range []struct {
		v      string
		absent bool
		want   int64
		bad    bool
	}{
		{v: "0"}, {v: "17", want: 17}, {absent: true},
		{v: "", bad: true}, {v: "-1", bad: true}, {v: "+1", bad: true}, {v: "01", bad: true},
		{v: " 1", bad: true}, {v: "1.0", bad: true}, {v: "x", bad: true},
	} {
		d := map[string]string{}
		if !c.absent {
			d[detail.InflightCalls] = c.v
		}
		n, ok, err := detail.Get(d, detail.InflightCalls)
		if ok == c.absent || (err != nil) != c.bad || (!c.bad && n != c.want) {
			t.Errorf("Get(%q, absent=%v) = %d, %v, %v", c.v, c.absent, n, ok, err)
		}
	}
}
