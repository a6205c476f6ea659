package acceptance

import (
	"fmt"
	"path/filepath"

	"github.com/onsi/ginkgo/v2/reporters"
	"github.com/onsi/ginkgo/v2/types"
)

// writeJUnit writes junit.xml with Ginkgo's JUnit reporter.
func writeJUnit(gr types.Report, dir string) error {
	err := reporters.GenerateJUnitReportWithConfig(gr, filepath.Join(dir, "junit.xml"), reporters.JunitReportConfig{
		OmitLeafNodeType: true, OmitSuiteSetupNodes: true,
	})
	if err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}
