package sysfs

import (
	"errors"
	"fmt"
	"os"
)

// nvmeCoreMultipath is nvme_core's multipath module parameter: Y or N.
const nvmeCoreMultipath = "module/nvme_core/parameters/multipath"

// Multipath reports whether native NVMe multipath is on: block disks are then
// heads under the subsystem (nvmeKnM) and the per-path disks under the
// controllers are hidden. A kernel built without multipath support has no
// such parameter: false. The error wraps ErrNotExist when nvme_core is not
// loaded at all.
func (fs FS) Multipath() (bool, error) {
	v, err := readFile(fs.path(nvmeCoreMultipath))
	if errors.Is(err, ErrNotExist) {
		if _, serr := os.Stat(fs.path("module/nvme_core")); serr == nil {
			return false, nil
		}
		return false, err
	}
	if err != nil {
		return false, err
	}
	switch v {
	case "Y", "y", "1":
		return true, nil
	case "N", "n", "0":
		return false, nil
	}
	return false, parseError(fs.path(nvmeCoreMultipath), fmt.Errorf("want Y or N, got %q", v))
}
